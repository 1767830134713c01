"""A raw HTTP server on 127.0.0.1, in a thread, for whole perfbench runs against a hostile server.

It writes exactly the bytes a test gives it (escape sequences, markup, an echoed key), one
connection per request (``Connection: close``). ``answer(index, headers)`` makes each response;
``index`` is the request's number from its ``X-Request-ID`` (``<run id>-<step>-<index>``), or
the count of requests so far when there is none (the pre-flight request).
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from typing import Any, Callable

Answer = Callable[[int, dict[str, str]], bytes]
_HEAD_BYTES = 65536  # a request head past this is refused (the server is bounded too)


def http_response(status: int, body: bytes, content_type: str = "application/json") -> bytes:
    """A whole HTTP/1.1 response that closes its connection."""
    head = f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode() + body


def error_response(status: int, message: str) -> bytes:
    """An OpenAI-style JSON error answer carrying ``message``."""
    return http_response(status, json.dumps({"error": {"message": message}}).encode())


def sse_response(*events: Any) -> bytes:
    """A 200 SSE stream of ``events`` (each JSON-encoded unless bytes), ended by ``[DONE]``."""
    body = b"".join(b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n" for e in events)
    return http_response(200, body + b"data: [DONE]\n\n", "text/event-stream")


def chat_answer(text: str = "hello", *, finish_reason: str = "stop") -> bytes:
    """A good streamed chat answer: one content package, ``finish_reason``, usage."""
    return sse_response(
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": text}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}},
    )


class RawServer:
    """``with RawServer(answer) as server: ... server.url`` (the chat completions endpoint)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.count = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer._serve(self.request)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1/chat/completions"

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data and len(data) < _HEAD_BYTES:
            piece = conn.recv(65536)
            if not piece:
                return
            data += piece
        head, _, body = data.partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        while len(body) < length:
            piece = conn.recv(65536)
            if not piece:
                return
            body += piece
        with self._lock:
            index = self.count
            self.count += 1
        request_id = headers.get("x-request-id", "")
        tail = request_id.rpartition("-")[2]
        if tail.isdigit():
            index = int(tail)
        conn.sendall(self.answer(index, headers))
        conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> "RawServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
