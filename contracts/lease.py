"""The runner lease: which runner works on a job and until when it promised to report again."""

from __future__ import annotations

import msgspec

__all__ = ["Lease"]


class Lease(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A runner's claim on a running job, renewed by its heartbeat; stored in the lease bucket."""

    runner_id: str
    expires_at: str
