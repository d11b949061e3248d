"""Encoding and decoding of events on the wire, with clear errors for unknown or broken payloads."""

from __future__ import annotations

from typing import Any, Final, Literal, get_args

import msgspec

from contracts.events import Event
from contracts.upcast import UPCASTERS, parse_tag, upcast

__all__ = ["CURRENT_VERSIONS", "EventDecodeError", "decode_event", "encode_event", "event_tag"]

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
_any_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder()

DecodeErrorKind = Literal["corrupt", "unsupported_version"]


def _current_versions() -> dict[str, int]:
    versions: dict[str, int] = {}
    for kind in get_args(Event):
        parsed = parse_tag(str(kind.__struct_config__.tag))
        if parsed is not None:
            versions[parsed[0]] = parsed[1]
    return versions


CURRENT_VERSIONS: Final[dict[str, int]] = _current_versions()
"""The schema version this build writes for each event name, such as `{"turn.completed": 1}`."""


class EventDecodeError(ValueError):
    """A stored payload is not a known event: an unknown tag or version, or malformed JSON.

    `kind` is `unsupported_version` when the tag names a version (or an event) this build does not
    know, which usually means a newer turnlog wrote it, and `corrupt` for anything else.
    """

    def __init__(
        self,
        detail: str,
        *,
        sequence: int | None = None,
        kind: DecodeErrorKind = "corrupt",
        tag: str | None = None,
    ) -> None:
        self.detail = detail
        self.sequence = sequence
        self.kind: DecodeErrorKind = kind
        self.tag = tag
        where = f" at stream sequence {sequence}" if sequence is not None else ""
        super().__init__(
            f"cannot decode event{where}: {detail}. "
            "Upgrade turnlog if the event comes from a newer version, or delete the job if the payload is corrupt."
        )

    def history_error(self) -> str:
        """Describe the failure for a checkpoint's `historyError`, naming the version or the sequence."""
        where = f" at sequence {self.sequence}" if self.sequence is not None else ""
        if self.kind == "unsupported_version":
            return f"unsupported schema version {self.tag}{where}; upgrade turnlog to read this job"
        return f"corrupt event{where}: {self.detail}"


def event_tag(event: Event) -> str:
    """Return the versioned tag of an event, such as `turn.completed.v1`."""
    return str(type(event).__struct_config__.tag)


def encode_event(event: Event) -> bytes:
    """Encode an event as compact JSON with its versioned `type` tag."""
    return _encoder.encode(event)


def decode_event(payload: bytes, *, sequence: int | None = None) -> Event:
    """Decode one stored event, upcasting old versions; raise EventDecodeError with the reason on failure."""
    try:
        return _decoder.decode(payload)
    except msgspec.ValidationError as exc:
        # The fast path failed: the payload is an old version, a newer one, or broken.
        return _decode_slow(payload, sequence, exc)
    except msgspec.DecodeError as exc:
        raise EventDecodeError(f"malformed JSON ({exc})", sequence=sequence) from exc


def _decode_slow(payload: bytes, sequence: int | None, first_error: msgspec.ValidationError) -> Event:
    document = _any_decoder.decode(payload)
    tag = document.get("type") if isinstance(document, dict) else None
    if not isinstance(tag, str):
        raise EventDecodeError(str(first_error), sequence=sequence) from first_error

    if tag in UPCASTERS:
        try:
            return _decoder.decode(_encoder.encode(upcast(document)))
        except msgspec.ValidationError as exc:
            raise EventDecodeError(f"{tag} payload is invalid ({exc})", sequence=sequence, tag=tag) from exc

    parsed = parse_tag(tag)
    if parsed is None:
        raise EventDecodeError(str(first_error), sequence=sequence, tag=tag) from first_error
    current = CURRENT_VERSIONS.get(parsed[0])
    if current is None or parsed[1] > current:
        raise EventDecodeError(
            str(first_error), sequence=sequence, kind="unsupported_version", tag=tag
        ) from first_error
    raise EventDecodeError(str(first_error), sequence=sequence, tag=tag) from first_error
