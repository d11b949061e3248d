"""Job ids: short, lowercase and safe as a NATS subject token and a KV key."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

__all__ = ["derived_job_id", "is_job_id", "new_job_id"]

_LENGTH = 10
_PATTERN = re.compile(r"^[a-z0-9]{4,40}$")


def new_job_id() -> str:
    """Return a random job id such as `k3f9x2m1qa`."""
    return _encode(secrets.token_bytes(16))


def derived_job_id(*parts: str) -> str:
    """Return the job id derived from stable inputs, so the same request always maps to the same job."""
    return _encode(hashlib.sha256("\x1f".join(parts).encode()).digest())


def is_job_id(text: str) -> bool:
    """Tell whether `text` has the shape of a job id."""
    return bool(_PATTERN.match(text))


def _encode(raw: bytes) -> str:
    return base64.b32encode(raw).decode().lower().rstrip("=")[:_LENGTH]
