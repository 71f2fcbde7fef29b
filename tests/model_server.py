"""A real HTTP server on 127.0.0.1 that serves model files with HTTP Range, and breaks on
request: a body cut short, a server error, a Range ignored, a slow trickle. For the model
downloader and deploy tests (shared helper: tests/test_layout.py HELPER_MODULES)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def sha256_of(data: bytes | Path) -> str:
    return hashlib.sha256(data.read_bytes() if isinstance(data, Path) else data).hexdigest()


@dataclass
class ModelServer:
    """`files`: URL path -> bytes. `faults`: URL path -> faults for the next requests,
    one used per request: "cut:N" (announce the whole length, send N bytes, close),
    "500", "404", "ignore-range", "slow:B" (B bytes per second)."""

    files: dict[str, bytes] = field(default_factory=dict)
    faults: dict[str, list[str]] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def do_GET(self) -> None:
                wanted = self.headers.get("Range")
                server.requests.append((self.path, wanted))
                queue = server.faults.get(self.path) or []
                fault = queue.pop(0) if queue else ""
                data = server.files.get(self.path)
                if data is None or fault == "404":
                    self.send_error(404)
                    return
                if fault == "500":
                    self.send_error(500)
                    return
                start = 0
                if wanted and fault != "ignore-range":
                    start = int(wanted.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if fault.startswith("cut:"):
                    self.wfile.write(body[: int(fault[4:])])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                rate = int(fault[5:]) if fault.startswith("slow:") else 0
                step = max(1, rate // 10) if rate else len(body)
                for offset in range(0, len(body), step):
                    try:
                        self.wfile.write(body[offset:offset + step])
                        self.wfile.flush()
                    except OSError:
                        return
                    if rate:
                        time.sleep(0.1)

        return Handler


@contextmanager
def model_server(files: dict[str, bytes] | None = None) -> Iterator[ModelServer]:
    """A running ModelServer; stopped when the block ends."""
    server = ModelServer(files=dict(files or {}))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), server.handler())
    httpd.daemon_threads = True
    server.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), name="model-server",
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
