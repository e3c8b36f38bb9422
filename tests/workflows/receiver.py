"""A local HTTP server that receives webhooks the way a well-behaved receiver does (honours Idempotency-Key)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Script:
    """Responses to give, in order (status, delay seconds); after them every request gets `default`."""

    responses: list[tuple[int, float]] = field(default_factory=list)
    default: tuple[int, float] = (200, 0.0)


class WebhookReceiver:
    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.requests: list[Received] = []
        # What a receiver honouring Idempotency-Key applies: each key once, however many times it was posted.
        self.applied_keys: set[str] = set()
        self.posts_by_key: Counter[str] = Counter()
        self.arrived = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(raw or b"null"))
                    )
                    status, delay = (
                        receiver.script.responses.pop(0) if receiver.script.responses else receiver.script.default
                    )
                receiver.arrived.set()
                if delay:
                    time.sleep(delay)
                key = self.headers.get("Idempotency-Key", "")
                with receiver._lock:
                    receiver.posts_by_key[key] += 1
                    if status < 300:
                        receiver.applied_keys.add(key)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"ok": true}')
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): what a real receiver sees too

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
