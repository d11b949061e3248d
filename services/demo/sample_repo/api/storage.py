"""In-memory storage of inventory items."""

from __future__ import annotations

import itertools
import threading
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Item:
    """One inventory item; `price` is in the store's currency."""

    id: int
    name: str
    price: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class Storage:
    """Items by id. Lookups of an unknown id raise KeyError."""

    def __init__(self) -> None:
        self._items: dict[int, Item] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def list(self) -> list[Item]:
        with self._lock:
            return sorted(self._items.values(), key=lambda item: item.id)

    def get(self, item_id: int) -> Item:
        with self._lock:
            return self._items[item_id]

    def create(self, name: str, price: float) -> Item:
        with self._lock:
            item = Item(id=next(self._ids), name=name, price=price)
            self._items[item.id] = item
            return item

    def delete(self, item_id: int) -> None:
        with self._lock:
            del self._items[item_id]
