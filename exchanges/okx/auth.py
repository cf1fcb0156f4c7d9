"""OKX v5 request signing (PROTOCOL_RULES §3, §4). Secrets stay inside `Credentials`.

REST: sign = Base64(HMAC-SHA256(secret, timestamp + METHOD + requestPath(+?query) + body)), timestamp ISO-8601
UTC with milliseconds; headers OK-ACCESS-KEY/SIGN/TIMESTAMP/PASSPHRASE (+ x-simulated-trading: 1 in demo).
WS login: the same HMAC over timestamp(seconds) + "GET" + "/users/self/verify".

No function here puts a secret into an exception message or a log; `repr(Credentials)` masks everything.
The returned headers / login args do contain the passphrase and a signature: never log them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from pydantic import SecretStr

if TYPE_CHECKING:
    from config.settings import ExchangeSettings

WS_LOGIN_PATH = "/users/self/verify"
_MASK = "'***'"


def sign(secret: str, prehash: str) -> str:
    """Base64(HMAC-SHA256(secret, prehash))."""
    digest = hmac.new(secret.encode(), prehash.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def rest_timestamp(epoch_s: float) -> str:
    """2020-12-08T09:08:57.715Z: UTC, milliseconds, literal Z."""
    ms = round(epoch_s * 1000)  # round, not int(): 1607418537.715 * 1000 is 1607418537714.9998
    whole = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return f"{whole:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def request_path(path: str, params: Mapping[str, str] | None = None) -> str:
    """The path with its query string, exactly as it must be both signed and sent (GET)."""
    if not params:
        return path
    return f"{path}?{urlencode(params)}"


def _reveal(value: str | SecretStr | None, name: str) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    # Only the field name, never the value.
    if not isinstance(value, str) or not value:
        raise ValueError(f"OKX credential {name} is missing or not a non-empty string")
    if not (value.isascii() and value.isprintable()):
        # It goes into HTTP headers, which are ASCII: the encoder's error would quote the character.
        raise ValueError(f"OKX credential {name} must be printable ASCII")
    return value


class Credentials:
    """API key, secret and passphrase. Signs requests; never shows the values."""

    __slots__ = ("_api_key", "_passphrase", "_secret")

    def __init__(
        self, api_key: str | SecretStr, secret: str | SecretStr, passphrase: str | SecretStr
    ) -> None:
        self._api_key = _reveal(api_key, "api_key")
        self._secret = _reveal(secret, "api_secret")
        self._passphrase = _reveal(passphrase, "passphrase")

    @classmethod
    def from_settings(cls, settings: ExchangeSettings) -> Credentials:
        return cls(
            _reveal(settings.api_key, "api_key"),
            _reveal(settings.api_secret, "api_secret"),
            _reveal(settings.passphrase, "passphrase"),
        )

    def __repr__(self) -> str:
        return f"Credentials(api_key={_MASK}, secret={_MASK}, passphrase={_MASK})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        # Keep secrets out of pickles (job queues, caches): rebuild from settings in the other process.
        raise TypeError("Credentials cannot be pickled")

    def rest_headers(
        self,
        method: str,
        path: str,
        body: str = "",
        *,
        demo: bool = False,
        now: float | None = None,
    ) -> dict[str, str]:
        """Headers for one REST call. `path` includes the query string (see `request_path`); `body` is
        the exact JSON text that will be sent ("" for GET). `now`: epoch seconds (a server-synced clock)."""
        method = method.upper()
        if method not in ("GET", "POST"):
            raise ValueError(f"unsupported method {method[:10]!r}")
        if method == "GET" and body:
            raise ValueError("a GET request has no body; put parameters in the query string")
        if not path.startswith("/"):
            raise ValueError("path must start with '/' (e.g. /api/v5/account/balance)")
        ts = rest_timestamp(time.time() if now is None else now)
        headers = {
            "OK-ACCESS-KEY": self._api_key,
            "OK-ACCESS-SIGN": sign(self._secret, ts + method + path + body),
            "OK-ACCESS-TIMESTAMP": ts,
            "OK-ACCESS-PASSPHRASE": self._passphrase,
            "Content-Type": "application/json",
        }
        if demo:
            headers["x-simulated-trading"] = "1"
        return headers

    def ws_login_args(self, now: float | None = None) -> dict[str, str]:
        """args[0] of the WS login: timestamp in whole SECONDS (expires after 30 s)."""
        ts = str(int(time.time() if now is None else now))
        return {
            "apiKey": self._api_key,
            "passphrase": self._passphrase,
            "timestamp": ts,
            "sign": sign(self._secret, ts + "GET" + WS_LOGIN_PATH),
        }

    def ws_login(self, now: float | None = None) -> dict[str, Any]:
        """The whole login request: {"op": "login", "args": [...]}."""
        return {"op": "login", "args": [self.ws_login_args(now)]}
