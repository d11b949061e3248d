"""Validation of callback URLs, so a job's outcome is never POSTed to an internal address by accident."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from services.api.errors import ApiError

__all__ = ["check_callback_url"]

_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def check_callback_url(url: str, *, allow_private: bool) -> None:
    """Raise a 400 ApiError naming the rule when `url` is not an acceptable callback.

    Rules: http or https only, no credentials in the URL, and no loopback, link-local or private
    address unless TURNLOG_ALLOW_PRIVATE_CALLBACKS=1. Host names are not resolved here, so the
    notifier repeats the address check on the resolved address at delivery time.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ApiError(400, "invalid_callback", f"callback URL {url!r} must use http or https", field="callback.url")
    if parts.username or parts.password:
        raise ApiError(
            400,
            "invalid_callback",
            "callback URL must not contain credentials; use TURNLOG_CALLBACK_SECRET to verify deliveries instead",
            field="callback.url",
        )
    host = (parts.hostname or "").lower()
    if not host:
        raise ApiError(400, "invalid_callback", f"callback URL {url!r} has no host", field="callback.url")
    if allow_private:
        return
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        raise _private(url)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return
    if address.is_loopback or address.is_link_local or address.is_private or address.is_unspecified:
        raise _private(url)


def _private(url: str) -> ApiError:
    return ApiError(
        400,
        "invalid_callback",
        f"callback URL {url!r} points to a loopback, link-local or private address; "
        "set TURNLOG_ALLOW_PRIVATE_CALLBACKS=1 to allow it",
        field="callback.url",
    )
