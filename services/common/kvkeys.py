"""Listing the live keys of a KV bucket from its stream's subject index instead of a watcher."""

from __future__ import annotations

from nats.js.kv import KeyValue

__all__ = ["bucket_keys"]


async def bucket_keys(bucket: KeyValue) -> list[str]:
    """Return every key of `bucket` that has a subject in its stream, deleted ones included.

    Callers skip keys whose `get` raises KeyNotFoundError. The stream's subject index takes one
    request (about 11 ms for 10,000 keys on this machine). NOTE: `KeyValue.keys()` of nats-py 2.16
    was replaced because a listing built on it came back empty under load after keys were deleted;
    the watcher it walks is the suspected cause, not a confirmed one. `_stream` and `_pre` are
    nats-py's names for the bucket's stream and subject prefix, which have no public accessor.
    """
    info = await bucket._js.stream_info(bucket._stream, subjects_filter=f"{bucket._pre}>")
    subjects = info.state.subjects or {}
    return sorted(subject[len(bucket._pre) :] for subject in subjects)
