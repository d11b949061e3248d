"""Tests of the inventory API handlers; they run under unittest and pytest alike."""

# Inside turnlog's source tree mypy sees this sample as a subpackage, where `api` is not top-level.

from __future__ import annotations

import json
import unittest

from api.app import create_item, delete_item, dispatch, get_item, list_items
from api.storage import Storage


class HandlerTests(unittest.TestCase):
    def setUp(self) -> None:
        self.storage = Storage()

    def test_list_starts_empty(self) -> None:
        assert list_items(self.storage) == (200, {"items": []})

    def test_create_then_get(self) -> None:
        status, body = create_item(self.storage, {"name": "hammer", "price": 12.5})
        assert status == 201
        item_id = body["item"]["id"]
        assert get_item(self.storage, str(item_id)) == (200, {"item": body["item"]})

    def test_delete_removes_item(self) -> None:
        _, body = create_item(self.storage, {"name": "saw", "price": 20})
        item_id = str(body["item"]["id"])
        assert delete_item(self.storage, item_id) == (200, {"deleted": int(item_id)})
        assert list_items(self.storage) == (200, {"items": []})

    def test_unknown_route(self) -> None:
        status, _ = dispatch("GET", "/nowhere", b"")
        assert status == 404

    def test_create_through_dispatch(self) -> None:
        status, body = dispatch("POST", "/items", json.dumps({"name": "drill", "price": 99}).encode())
        assert status == 201
        assert body["item"]["name"] == "drill"


if __name__ == "__main__":
    unittest.main()
