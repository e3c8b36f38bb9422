"""A small OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks, scripted per test.

The `openai` SDK 3.x sends through httpx2, which respx cannot intercept (NOTES.md), so tests point `base_url` at
this real server instead. Each request to `/v1/chat/completions` or `/v1/audio/transcriptions` takes the next
scripted `Reply` for that path (or asks the `responder`), and every request is recorded (path, headers, JSON body)
so tests can assert what the client sent.

    with OpenAIServer() as server:
        server.script("/v1/chat/completions", Reply.rate_limited(retry_after=1), Reply.chat(json.dumps(answer)))
        ... point OPENAI_BASE_URL at server.base_url ...
        assert server.requests()[0].json["model"] == "gpt-test"
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHAT_PATH = "/v1/chat/completions"
TRANSCRIPTION_PATH = "/v1/audio/transcriptions"


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    # Seconds to wait before answering (a slow server; past the client's timeout, the client gives up first).
    delay_seconds: float = 0.0

    @classmethod
    def chat(
        cls,
        content: str,
        *,
        model: str = "gpt-test-2026-01-01",
        finish_reason: str = "stop",
        prompt_tokens: int = 120,
        completion_tokens: int = 40,
        delay_seconds: float = 0.0,
    ) -> Reply:
        body = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "finish_reason": finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return cls(200, body, delay_seconds=delay_seconds)

    @classmethod
    def error(
        cls, status: int, message: str, *, headers: dict[str, str] | None = None, code: str | None = None
    ) -> Reply:
        return cls(status, {"error": {"message": message, "type": "test_error", "code": code}}, headers or {})

    @classmethod
    def rate_limited(cls, retry_after: float = 1.0) -> Reply:
        return cls.error(429, "Rate limit reached", headers={"Retry-After": f"{retry_after:g}"}, code="rate_limit")

    @classmethod
    def transcription(cls, text: str) -> Reply:
        return cls(200, {"text": text})


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    # time.monotonic() on arrival: lets a test check that a client waited (e.g. honoured Retry-After).
    received_at: float = field(default_factory=time.monotonic)

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


Responder = Callable[[RecordedRequest], Reply]


class OpenAIServer:
    """Threaded HTTP server on a free port; use as a context manager so it always stops."""

    def __init__(self, responder: Responder | None = None) -> None:
        self._scripts: dict[str, deque[Reply]] = {}
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.responder = responder
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        # Do not wait for a deliberately slow handler on shutdown.
        self._httpd.block_on_close = False
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="openai-test-server", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> OpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def script(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self._scripts.setdefault(path, deque()).extend(replies)

    def requests(self, path: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self._requests if path is None or r.path == path]

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self._requests.clear()

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self._requests.append(request)
            queue = self._scripts.get(request.path)
            if queue:
                return queue.popleft()
        if self.responder is not None:
            return self.responder(request)
        return Reply.error(500, f"no scripted reply for {request.path}")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:  # request lines would carry nothing useful and clutter output
                return

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    self._send(Reply(200, {"object": "list", "data": [{"id": "gpt-test", "object": "model"}]}))
                else:
                    self._send(Reply.error(404, "not found"))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                request = RecordedRequest(
                    method="POST", path=self.path, headers={k.lower(): v for k, v in self.headers.items()}, raw=raw
                )
                reply = server._next_reply(request)
                if reply.delay_seconds and server._stopping.wait(reply.delay_seconds):
                    return
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                if isinstance(reply.body, bytes):
                    payload = reply.body
                elif isinstance(reply.body, str):
                    payload = reply.body.encode()  # a raw (possibly broken) body, sent as is
                else:
                    payload = json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and went away: that is what a slow-answer test is about

        return Handler
