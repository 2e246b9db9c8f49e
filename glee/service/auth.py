"""API-key check shared by both protocols: ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``
(HTTP headers or gRPC metadata). With no keys configured, authentication is off."""

from __future__ import annotations

import hmac

from glee.service.errors import UnauthenticatedError

_BEARER = "bearer "


def check_api_key(keys: list[str], api_key: str | None, authorization: str | None) -> None:
    """Raise ``UnauthenticatedError`` unless the supplied credential is a configured key: the
    ``X-API-Key`` value when there is one, else the ``Authorization: Bearer`` token."""
    if not keys:
        return
    supplied = api_key
    if not supplied and authorization and authorization.lower().startswith(_BEARER):
        supplied = authorization[len(_BEARER) :].strip()
    if not supplied:
        raise UnauthenticatedError(
            "missing API key (X-API-Key or Authorization: Bearer <key>, as HTTP header or gRPC metadata)"
        )
    # Compare against every key in constant time, so timing reveals neither the key nor which one matched.
    matches = [hmac.compare_digest(supplied.encode(), key.encode()) for key in keys]
    if not any(matches):
        raise UnauthenticatedError("invalid API key")
