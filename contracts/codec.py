"""Encoding and decoding of events on the wire, with clear errors for unknown or broken payloads."""

from __future__ import annotations

import msgspec

from contracts.events import Event

__all__ = ["EventDecodeError", "decode_event", "encode_event", "event_tag"]

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)


class EventDecodeError(ValueError):
    """A stored payload is not a known event: an unknown tag or version, or malformed JSON."""

    def __init__(self, detail: str, *, sequence: int | None = None) -> None:
        self.detail = detail
        self.sequence = sequence
        where = f" at stream sequence {sequence}" if sequence is not None else ""
        super().__init__(
            f"cannot decode event{where}: {detail}. "
            "Upgrade turnlog if the event comes from a newer version, or delete the job if the payload is corrupt."
        )


def event_tag(event: Event) -> str:
    """Return the versioned tag of an event, such as `turn.completed.v1`."""
    return str(type(event).__struct_config__.tag)


def encode_event(event: Event) -> bytes:
    """Encode an event as compact JSON with its versioned `type` tag."""
    return _encoder.encode(event)


def decode_event(payload: bytes, *, sequence: int | None = None) -> Event:
    """Decode one stored event, raising EventDecodeError with the reason and sequence on failure."""
    try:
        return _decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise EventDecodeError(str(exc), sequence=sequence) from exc
    except msgspec.DecodeError as exc:
        raise EventDecodeError(f"malformed JSON ({exc})", sequence=sequence) from exc
