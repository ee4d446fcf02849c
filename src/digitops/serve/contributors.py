"""Who may contribute labelled drawings (`POST /feedback`), and who they are.

`serve.feedback` in params.yaml:
- `token`: a client must send `Authorization: Bearer <token>`, the token being `DIGITOPS_FEEDBACK_TOKEN`
  (compared in constant time); the service refuses to start in this mode without one.
- `open`: anyone (a public demo); each client's daily quota still applies.
- `off`: nobody.
- `auto` (the default): `token` when `DIGITOPS_FEEDBACK_TOKEN` is set, otherwise loopback clients only,
  so that a service opened to the network does not take training data from strangers by accident.

A contribution is attributed to the client's address (as the server sees it: behind a proxy, the proxy's,
so put the quota in the proxy too), recorded with each drawing.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus

from digitops.errors import DigitopsError

TOKEN_ENV = "DIGITOPS_FEEDBACK_TOKEN"
MODES = ("auto", "token", "open", "off")
LOOPBACK = "loopback"  # what `auto` becomes without a token


class NotAllowedError(DigitopsError):
    """This client may not contribute: `status` is 401 (no or a wrong token) or 403 (not allowed at all)."""

    def __init__(self, message: str, status: HTTPStatus) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ContributionPolicy:
    mode: str  # token, open, off or loopback (auto resolved)
    token: str | None

    @classmethod
    def from_setting(cls, setting: str, environ: Mapping[str, str] = os.environ) -> ContributionPolicy:
        """Resolve `serve.feedback` against the environment.

        Raises:
            DigitopsError: an unknown setting, or `token` with no token in the environment.
        """
        if setting not in MODES:
            raise DigitopsError(f"serve.feedback: {setting!r} is not one of {', '.join(MODES)}")
        token = environ.get(TOKEN_ENV, "").strip() or None
        if setting == "token" and token is None:
            raise DigitopsError(f"serve.feedback is token, but {TOKEN_ENV} is not set")
        if setting == "auto":
            setting = "token" if token else LOOPBACK
        return cls(setting, token)

    def contributor(self, authorization: str | None, client_host: str | None) -> str:
        """The client's id (its address) if it may contribute.

        Raises:
            NotAllowedError: 403 when contributions are off or the client is not on loopback where only
                loopback may; 401 when a token is required and missing or wrong.
        """
        client = client_host or "unknown"
        if self.mode == "off":
            raise NotAllowedError("contributions are off on this service", HTTPStatus.FORBIDDEN)
        if self.mode == LOOPBACK and not _is_loopback(client):
            raise NotAllowedError(
                f"contributions are taken from this machine only unless the service has {TOKEN_ENV} set "
                "(or serve.feedback: open)",
                HTTPStatus.FORBIDDEN,
            )
        if self.mode == "token":
            scheme, _, sent = (authorization or "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                sent.strip().encode(), self.token.encode()
            ):
                raise NotAllowedError(
                    "send the contribution token as `Authorization: Bearer <token>`", HTTPStatus.UNAUTHORIZED
                )
        return client


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
