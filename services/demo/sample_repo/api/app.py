"""HTTP routes of the inventory API, served with the standard library's http.server."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .storage import Storage

Response = tuple[int, dict[str, Any]]

store = Storage()


def list_items(storage: Storage) -> Response:
    return 200, {"items": [item.to_dict() for item in storage.list()]}


def get_item(storage: Storage, item_id: str) -> Response:
    item = storage.get(int(item_id))
    return 200, {"item": item.to_dict()}


def create_item(storage: Storage, payload: dict[str, Any]) -> Response:
    item = storage.create(name=str(payload["name"]), price=float(payload["price"]))
    return 201, {"item": item.to_dict()}


def delete_item(storage: Storage, item_id: str) -> Response:
    storage.delete(int(item_id))
    return 200, {"deleted": int(item_id)}


ROUTES: list[tuple[str, re.Pattern[str], Callable[..., Response]]] = [
    ("GET", re.compile(r"^/items$"), list_items),
    ("POST", re.compile(r"^/items$"), create_item),
    ("GET", re.compile(r"^/items/(?P<item_id>[^/]+)$"), get_item),
    ("DELETE", re.compile(r"^/items/(?P<item_id>[^/]+)$"), delete_item),
]


def dispatch(method: str, path: str, body: bytes) -> Response:
    for route_method, pattern, handler in ROUTES:
        match = pattern.match(path)
        if match is None or route_method != method:
            continue
        if method == "POST":
            return handler(store, json.loads(body))
        return handler(store, **match.groupdict())
    return 404, {"error": f"no route for {method} {path}"}


class RequestHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_DELETE(self) -> None:
        self._answer("DELETE")

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        status, payload = dispatch(method, self.path, self.rfile.read(length))
        encoded = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        self.wfile.write(encoded)


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the inventory API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    arguments = parser.parse_args()
    server = ThreadingHTTPServer((arguments.host, arguments.port), RequestHandler)
    print(f"serving on http://{arguments.host}:{arguments.port}")
    server.serve_forever()


if __name__ == "__main__":
    main()
