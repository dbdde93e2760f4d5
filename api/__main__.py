"""``python -m api``: serve the API with uvicorn on CLOUDMART_API_HOST:CLOUDMART_API_PORT."""

from __future__ import annotations

import copy
import signal
import sys
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from api.auth import AuthConfigError, check_auth_settings
from cloudmart import tracing
from cloudmart.process import exit_now
from cloudmart.settings import get_settings
from cloudmart.temporal import PayloadKeysMissing, data_converter


def main() -> None:
    settings = get_settings()
    try:
        data_converter(settings)  # refuse to start rather than write order data in clear
    except PayloadKeysMissing as err:
        print(f"api: {err}", file=sys.stderr, flush=True)
        exit_now(1)
    try:
        # Before uvicorn binds: an API that would be open to the network never listens.
        check_auth_settings(settings)
    except AuthConfigError as err:
        print(f"api: {err}", file=sys.stderr, flush=True)
        exit_now(2)
    tracing.setup("cloudmart-api")  # before the app is built: FastAPI takes the provider then
    config = uvicorn.Config(
        "api.main:create_app",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        log_level="info",
        log_config=log_config(),
    )
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, restores the handlers it found, and
    # re-raises the signal. With these handlers in place the re-raise is just recorded, so a
    # requested stop ends with status 0, like the worker's.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    try:
        server.run()
        status = 0 if server.started else 1
    except SystemExit as stop:  # uvicorn exits this way when it cannot bind its port
        status = stop.code if isinstance(stop.code, int) else 1
    # The API holds a Temporal client: end without interpreter finalization (cloudmart/process.py).
    exit_now(status)


def log_config() -> dict[str, Any]:
    """uvicorn's logging, each line ending with the trace id of the span it was written in (an
    access line: its request's), and our own loggers' warnings through it too (before, Python's
    last resort printed them bare)."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"trace": {"()": tracing.TraceIds}}
    for handler in config["handlers"].values():
        handler["filters"] = ["trace"]
    for formatter in config["formatters"].values():
        formatter["fmt"] += "%(trace)s"
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    return config


if __name__ == "__main__":
    main()
