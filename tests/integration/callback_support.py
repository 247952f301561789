"""A client's status callback endpoint, for the callback tests."""

from __future__ import annotations

import base64
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = "whsec_" + base64.b64encode(b"callback-secret-" * 2).decode()


class CallbackReceiver:
    """A client's callback endpoint: answers each POST with the next of `statuses` (then the last one),
    after `delay` seconds, and keeps what it got."""

    def __init__(self) -> None:
        self.statuses, self.delay, self.received = [200], 0.0, []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with owner._lock:
                    status = owner.statuses[min(len(owner.received), len(owner.statuses) - 1)]
                    owner.received.append((dict(self.headers), body))
                time.sleep(owner.delay)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/callbacks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
