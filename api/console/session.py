"""The console's session: one sealed cookie per browser.

It carries who the visitor is to the API (the bearer token they signed in with, or the demo
customer they shop as), their cart, and the token that every form must send back (against
cross-site request forgery). Sealed with AES-GCM under a key derived from the API's secret: the
browser can neither read the token inside nor change a byte of it, and the cookie is HttpOnly
(no script reads it), SameSite=Strict (no other site's page sends it) and scoped to /console.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.requests import Request
from starlette.responses import Response

from cloudmart.settings import Settings

COOKIE = "cloudmart_console"
PATH = "/console"
SESSION_SECONDS = 12 * 3600
"""A working day, as the codec's session; then the visitor signs in again."""
MAX_CART_LINES = 20


@dataclass(frozen=True)
class Session:
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    bearer: str | None = None
    """The token the API is called with: a customer's, a named operator's or the operator's."""
    role: str | None = None
    """``operator`` or ``customer`` once signed in; None for a visitor."""
    who: str | None = None
    """What the page shows as the signed-in name (a customer id, an operator's name)."""
    shopper: str | None = None
    """The demo customer chosen in the shop (only while the API requires no tokens)."""
    cart: tuple[tuple[str, int], ...] = ()
    expires: int = field(default_factory=lambda: int(time.time()) + SESSION_SECONDS)

    @property
    def operator(self) -> bool:
        return self.role == "operator"

    @property
    def customer_id(self) -> str | None:
        """Whose orders 'My account' shows: the signed-in customer, else the chosen shopper."""
        return self.who if self.role == "customer" else self.shopper

    def with_cart_line(self, sku: str, quantity: int) -> Session:
        lines = dict(self.cart)
        lines[sku] = quantity
        if quantity <= 0:
            del lines[sku]
        return replace(self, cart=tuple(lines.items())[:MAX_CART_LINES])

    def with_empty_cart(self) -> Session:
        return replace(self, cart=())

    def shopping_as(self, customer_id: str) -> Session:
        return replace(self, shopper=customer_id)

    def signed_in(self, *, bearer: str, role: str, who: str) -> Session:
        # A new CSRF token with every change of identity: a token seen before signing in
        # (in a page's source, say) is worth nothing after.
        return replace(
            self,
            bearer=bearer,
            role=role,
            who=who,
            csrf=secrets.token_urlsafe(24),
            expires=int(time.time()) + SESSION_SECONDS,  # a sign-in's own working day
        )

    def signed_out(self) -> Session:
        return Session(shopper=self.shopper, cart=self.cart)

    def checks(self, csrf: str | None) -> bool:
        return csrf is not None and hmac.compare_digest(csrf.encode(), self.csrf.encode())


class Sealer:
    """Seals sessions into cookie values and opens them again."""

    def __init__(self, settings: Settings) -> None:
        secret = settings.auth_secret or settings.operator_token
        # Without either secret (a bare `python -m api`), a key of this process: sessions end
        # when it restarts, which is all a console on such an API can offer.
        material = secret.get_secret_value().encode() if secret else os.urandom(32)
        self._aead = AESGCM(
            HKDF(
                algorithm=hashes.SHA256(), length=32, salt=None, info=b"cloudmart-console-session"
            ).derive(material)
        )
        self.secure = False
        """Whether cookies are marked Secure (set when the API is served over TLS)."""

    def seal(self, session: Session) -> str:
        nonce = os.urandom(12)
        body = json.dumps(_to_json(session), separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(nonce + self._aead.encrypt(nonce, body, None)).decode()

    def open(self, value: str | None) -> Session | None:
        """The session in ``value``; None when absent, forged, altered or expired."""
        if not value:
            return None
        try:
            raw = base64.urlsafe_b64decode(value.encode())
            data = json.loads(self._aead.decrypt(raw[:12], raw[12:], None))
            session = _from_json(data)
        except (ValueError, InvalidTag, TypeError, KeyError):
            return None
        return session if session.expires > time.time() else None

    def load(self, request: Request) -> Session:
        """The request's session, or a new visitor's."""
        return self.open(request.cookies.get(COOKIE)) or Session()

    def store(self, response: Response, session: Session) -> None:
        response.set_cookie(
            COOKIE,
            self.seal(session),
            max_age=max(0, session.expires - int(time.time())),
            path=PATH,
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )


def _to_json(session: Session) -> dict[str, Any]:
    return {
        "csrf": session.csrf,
        "bearer": session.bearer,
        "role": session.role,
        "who": session.who,
        "shopper": session.shopper,
        "cart": [list(line) for line in session.cart],
        "expires": session.expires,
    }


def _from_json(data: dict[str, Any]) -> Session:
    return Session(
        csrf=str(data["csrf"]),
        bearer=data["bearer"],
        role=data["role"],
        who=data["who"],
        shopper=data["shopper"],
        cart=tuple((str(sku), int(quantity)) for sku, quantity in data["cart"]),
        expires=int(data["expires"]),
    )
