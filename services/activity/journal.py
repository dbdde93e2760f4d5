"""The API's activity journal: each action appended to a local file before the answer is sent,
then stored in the activity database in batches, off the request path.

Why a file (docs/activity.md has the measurements): an append is one ``write`` system call,
a few microseconds on the event loop, with no lock to wait for and no thread to hop to, whatever
database the activity lives in. Once ``write`` returns, the line is the kernel's: a process
killed (SIGKILL included) after it has answered has lost nothing. The file is not fsync'd, so a
power cut may lose the last moments, as SQLite's ``synchronous=NORMAL`` would.

Each API process appends to a file of its own (``<pid>-<ns>-<random>.jsonl``) and holds an
exclusive ``flock`` on it for as long as it runs. The kernel drops that lock when the process
dies, however it dies: a file whose lock can be taken is an orphan, and whoever takes it stores
its actions (each is stored once: see ``ActivityStore.record``) and deletes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import uuid
from pathlib import Path

from pydantic import ValidationError

from services.activity.actions import Recorded

log = logging.getLogger("cloudmart.activity")

SUFFIX = ".jsonl"
OPENING = ".opening"
"""A file being created: renamed to ``.jsonl`` once locked, so no one claims it before."""


class Journal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path: Path | None = None
        self._fd: int | None = None
        self.size = 0
        """Bytes appended to the current file."""

    def open(self) -> None:
        # Owner-only, as the databases are: it holds what customers searched and bought.
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path, self._fd = self._new_file()
        self.size = 0

    def _new_file(self) -> tuple[Path, int]:
        name = f"{os.getpid()}-{time.time_ns()}-{uuid.uuid4().hex[:8]}"
        opening = self.directory / f"{name}{OPENING}"
        fd = os.open(opening, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else holds it
        path = self.directory / f"{name}{SUFFIX}"
        os.rename(opening, path)  # the lock is the file's, and stays with it
        return path, fd

    def append(self, action: Recorded) -> None:
        """Durable against the process's death once this returns (not against a power cut)."""
        if self._fd is None:
            raise RuntimeError("the activity journal is not open")
        line = action.model_dump_json().encode() + b"\n"
        written = os.write(self._fd, line)
        self.size += written
        if written != len(line):  # a full disk: the line is torn, and will be skipped
            raise OSError(f"activity journal {self.path}: wrote {written} of {len(line)} bytes")

    def rotate(self) -> None:
        """Start a new file and delete the current one: only once every action appended to it
        is stored (the caller knows)."""
        if self._fd is None or self.path is None:
            return
        old_path, old_fd = self.path, self._fd
        self.path, self._fd = self._new_file()
        self.size = 0
        old_path.unlink(missing_ok=True)
        os.close(old_fd)

    def close(self, *, stored: bool) -> None:
        """Close the file, deleting it if every action in it is stored; otherwise it is left
        for the next process to claim."""
        if self._fd is None or self.path is None:
            return
        if stored:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd, self.path = None, None

    def orphans(self) -> list[Orphan]:
        """The files whose writer is gone, each now locked by us, oldest first."""
        if not self.directory.is_dir():
            return []
        claimed = []
        for path in sorted(self.directory.iterdir()):
            if path == self.path or path.suffix not in (SUFFIX, OPENING):
                continue
            orphan = Orphan.claim(path)
            if orphan is not None:
                claimed.append(orphan)
        return claimed


class Orphan:
    """A journal file left by a process that is gone, locked by us while we store it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def claim(cls, path: Path) -> Orphan | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None  # another process stored and deleted it meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None  # its writer is alive (or another process is storing it)
        if not path.exists():  # stored and deleted between our open and our lock
            os.close(fd)
            return None
        return cls(path, fd)

    def actions(self) -> list[Recorded]:
        """Every complete line; a torn last line (a full disk, a power cut) is skipped, as is
        a line that does not parse, each with a warning."""
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        if lines[-1]:
            log.warning("%s: a torn last line of %d bytes skipped", self.path, len(lines[-1]))
        actions = []
        for number, line in enumerate(lines[:-1], start=1):
            try:
                actions.append(Recorded.model_validate_json(line))
            except ValidationError:
                log.warning("%s: line %d is not an action; skipped", self.path, number)
        return actions

    def discard(self) -> None:
        """Its actions are stored: delete it."""
        self.path.unlink(missing_ok=True)
        self.release()

    def release(self) -> None:
        """Leave it for later (its actions could not be stored now)."""
        with contextlib.suppress(OSError):
            os.close(self._fd)
