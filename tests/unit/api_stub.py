"""The API in this process, without Temporal or a database: the real application (or a small one
with the real error handlers), its state holding the settings, a client that has only the
payload codec, and nothing else. Requests go through httpx's ASGI transport; the lifespan,
which would connect to Temporal and open the databases, never runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from temporalio.converter import DataConverter

from api.deps import AppState
from api.errors import install_error_handlers
from api.main import create_app
from cloudmart.settings import Settings
from cloudmart.temporal import encrypted_converter
from tests.support import TEST_PAYLOAD_KEYS

OPERATOR_TOKEN = "operator-token-" + "o" * 24
AUTH_SECRET = "auth-secret-" + "s" * 24


class Unreachable:
    """A part of the API's state that these tests' requests must never reach."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> object:
        raise AssertionError(f"the request reached {self._name}.{attribute}")


class CodecOnlyClient:
    """What the codec server takes from the API's Temporal client: its data converter."""

    def __init__(self, data_converter: DataConverter) -> None:
        self.data_converter = data_converter


def settings(**changed: object) -> Settings:
    """The API's settings with an operator token and an auth secret, customer auth off."""
    values: dict[str, object] = {
        "operator_token": OPERATOR_TOKEN,
        "auth_secret": AUTH_SECRET,
        "payload_keys": TEST_PAYLOAD_KEYS,
    }
    return Settings(**{**values, **changed})


def state(config: Settings) -> AppState:
    return AppState(
        settings=config,
        client=CodecOnlyClient(encrypted_converter(config.payload_key_ring)),  # type: ignore[arg-type]
        sagas=Unreachable("sagas"),  # type: ignore[arg-type]
        read=Unreachable("read"),  # type: ignore[arg-type]
        events=Unreachable("events"),  # type: ignore[arg-type]
        loyalty=Unreachable("loyalty"),  # type: ignore[arg-type]
        customers=Unreachable("customers"),  # type: ignore[arg-type]
        projector=Unreachable("projector"),  # type: ignore[arg-type]
        databases={},
    )


def real_app(config: Settings) -> FastAPI:
    """``api.main.create_app``, its state set as the lifespan would, minus Temporal and the
    databases."""
    app = create_app(config)
    app.state.cloudmart = state(config)
    return app


def bare_app(config: Settings) -> FastAPI:
    """An empty application answering errors as the API does, for a test's own routes."""
    app = FastAPI()
    install_error_handlers(app, config.temporal_address)
    app.state.cloudmart = state(config)
    return app


@asynccontextmanager
async def client_of(
    app: FastAPI, base_url: str = "http://testserver"
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
