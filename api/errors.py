"""Errors the API answers with: always a JSON body with ``detail``, never a stack trace."""

from __future__ import annotations

import json
import logging
import math

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from temporalio.service import RPCError

from cloudmart.contracts.orders import OrderStatus
from cloudmart.temporal import is_unreachable

log = logging.getLogger("cloudmart.api")


class ErrorBody(BaseModel):
    detail: str


class ApiError(Exception):
    status_code = status.HTTP_500_INTERNAL_SERVER_ERROR
    headers: dict[str, str] | None = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Unauthorized(ApiError):
    """No credentials, or ones that prove nothing (bad signature, expired)."""

    status_code = status.HTTP_401_UNAUTHORIZED
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(ApiError):
    """Credentials that are valid but do not allow this request."""

    status_code = status.HTTP_403_FORBIDDEN


class OrderNotFound(ApiError):
    status_code = status.HTTP_404_NOT_FOUND

    def __init__(self, order_id: str) -> None:
        super().__init__(f"order {order_id} not found")


class CustomerNotFound(ApiError):
    status_code = status.HTTP_404_NOT_FOUND

    def __init__(self, customer_id: str) -> None:
        super().__init__(f"customer {customer_id} not found")


class OrderConflict(ApiError):
    """The order's state does not allow the request (too late to cancel, not in review...)."""

    status_code = status.HTTP_409_CONFLICT


class OrderHasEnded(OrderConflict):
    def __init__(self, order_id: str, status: OrderStatus | None, detail: str) -> None:
        super().__init__(detail)
        self.order_id = order_id
        self.status = status


class Unavailable(ApiError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE


class ClientGone(ApiError):
    """The client closed the connection before its answer was ready. The server drops this
    answer unsent; it ends the request without pretending it succeeded or failed on our side
    (499: nginx's "client closed request")."""

    status_code = 499


class UnprocessableField(ApiError):
    """A well-formed value the request cannot use: answered in FastAPI's validation shape."""

    status_code = status.HTTP_422_UNPROCESSABLE_CONTENT

    def __init__(self, loc: tuple[str, str], detail: str, error_type: str) -> None:
        super().__init__(detail)
        self.loc = loc
        self.error_type = error_type


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (404, 409, 503)
}
AUTH_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {
        "model": ErrorBody,
        "description": "No bearer token, or one that is invalid or expired",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    },
    403: {"model": ErrorBody, "description": "The token does not allow this request"},
    503: {"model": ErrorBody},
}
"""What a route behind a token may also answer (503: operator actions with no operator token
configured)."""


def _finite(value: object) -> object:
    """``value`` with each NaN or infinity replaced by its name, as a string."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list):
        return [_finite(item) for item in value]
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    return value


def install_error_handlers(app: FastAPI, temporal_address: str) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError) -> Response:
        # FastAPI's shape, but ASCII-escaped: the errors echo the rejected input, which may hold
        # a lone surrogate ("\ud800" is valid JSON) that cannot be encoded as UTF-8; and with
        # non-finite numbers as strings: Python's parser takes NaN, Infinity and 1e400, which
        # strict JSON has no way to write back.
        errors = _finite(jsonable_encoder({"detail": err.errors()}))
        body = json.dumps(errors, ensure_ascii=True, allow_nan=False)
        return Response(
            body, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, media_type="application/json"
        )

    @app.exception_handler(UnprocessableField)
    async def _unprocessable(_: Request, err: UnprocessableField) -> JSONResponse:
        body = {"detail": [{"loc": list(err.loc), "msg": err.detail, "type": err.error_type}]}
        return JSONResponse(body, status_code=err.status_code)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, err: ApiError) -> JSONResponse:
        return JSONResponse(
            {"detail": err.detail}, status_code=err.status_code, headers=err.headers
        )

    @app.exception_handler(SQLAlchemyError)
    async def _database(request: Request, err: SQLAlchemyError) -> JSONResponse:
        log.warning("database error on %s %s: %s", request.method, request.url.path, err)
        return JSONResponse(
            {"detail": "a service database is unavailable; see /healthz"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )

    # Handlers for specific classes run inside the app; one for bare Exception would run in the
    # outermost middleware, which re-raises after answering and drops the client's connection.
    async def _temporal(request: Request, err: Exception) -> JSONResponse:
        if is_unreachable(err):
            return JSONResponse(
                {"detail": f"Temporal is unreachable at {temporal_address}; try again shortly"},
                status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=err)
        return JSONResponse(
            {"detail": "internal error; it has been logged"},
            status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    app.add_exception_handler(RPCError, _temporal)
    app.add_exception_handler(RuntimeError, _temporal)  # the SDK's "Failed client connect"
