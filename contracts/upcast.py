"""Upcasters: pure functions that turn stored events of an old schema version into the current one."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

__all__ = ["UPCASTERS", "parse_tag", "upcast"]

Document = dict[str, Any]

_TAG = re.compile(r"^(?P<name>[a-z_]+\.[a-z_]+)\.v(?P<version>[1-9][0-9]*)$")


def _checkpoint_deleted_v1_to_v2(document: Document) -> Document:
    # Version 1 stored the origin label ("api") in `reason`; version 2 keeps it in `requestedBy`
    # and leaves `reason` for words. An empty v1 reason means the origin was not recorded.
    upgraded = {key: value for key, value in document.items() if key != "reason"}
    upgraded["type"] = "checkpoint.deleted.v2"
    upgraded["requestedBy"] = document.get("reason") or "unknown"
    upgraded["reason"] = ""
    return upgraded


UPCASTERS: Final[dict[str, Callable[[Document], Document]]] = {
    "checkpoint.deleted.v1": _checkpoint_deleted_v1_to_v2,
}
"""For each old tag, the function that lifts a decoded JSON object one version up."""


def parse_tag(tag: str) -> tuple[str, int] | None:
    """Split a versioned tag such as `turn.completed.v1` into its name and version; None when malformed."""
    found = _TAG.match(tag)
    if found is None:
        return None
    return found.group("name"), int(found.group("version"))


def upcast(document: Document) -> Document:
    """Apply upcasters until the object's `type` is a current tag; objects already current come back unchanged."""
    seen = 0
    while True:
        tag = document.get("type")
        step = UPCASTERS.get(tag) if isinstance(tag, str) else None
        if step is None:
            return document
        document = step(document)
        seen += 1
        if seen > len(UPCASTERS):
            raise ValueError(f"upcasters for {tag!r} form a cycle; fix contracts.upcast.UPCASTERS")
