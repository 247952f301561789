"""The receiver run inside this process, on a thread of its own, and what it recorded, read directly
(tests, benchmarks, `python -m receiver`)."""

from __future__ import annotations

import threading
from typing import Any

from receiver.behaviour import SignatureCheck, Store
from receiver.callbacks import PATH as CALLBACKS_PATH
from receiver.callbacks import CallbackLog
from receiver.receipts import ReceiptSender
from receiver.server import ReceiverHTTPServer


class Receiver:
    """In-process receiver: `with Receiver(delay_ms=50) as r: post(r.url, ...)`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        signing_secret: str = "",
        receipt_secret: str = "",
        callback_secret: str = "",
        **behaviour: Any,
    ) -> None:
        """`signing_secret`: `whsec_...` (several separated by spaces); then unsigned or badly signed POSTs get 401.
        `receipt_secret`: `whsec_...`; then each accepted delivery gets delivery receipts signed with it.
        `callback_secret`: `whsec_...`; then status callbacks to /callbacks that do not verify get 401."""
        self._store = Store(behaviour)
        signatures = SignatureCheck(signing_secret) if signing_secret.strip() else None
        receipts = ReceiptSender(receipt_secret) if receipt_secret.strip() else None
        self._server = ReceiverHTTPServer((host, port), self._store, signatures, receipts, CallbackLog(callback_secret))
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/webhook"

    def start(self) -> Receiver:
        # A short poll interval keeps stop() fast; shutdown() waits for the next poll tick.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.drop_connections()
        self._server.server_close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def deliveries(self) -> list[dict[str, Any]]:
        return self._store.deliveries()

    def stats(self) -> dict[str, int]:
        return self._store.stats()

    def set_behaviour(self, **kw: Any) -> dict[str, Any]:
        return self._store.set_behaviour(kw)

    def reset(self) -> None:
        self._store.reset()

    def count_by_key(self) -> dict[str | None, int]:
        return self._store.count_by_key()

    @property
    def callback_url(self) -> str:
        return f"{self.base_url}{CALLBACKS_PATH}"

    def callbacks_taken(self) -> list[dict[str, Any]]:
        """Each status callback taken: webhook_id, type, message_id, status, delivery_status, verified."""
        return self._server.callbacks.taken()

    def receipts_sent(self) -> list[dict[str, Any]]:
        """Each receipt sent: messageId, status, and the status the API answered (None: no answer)."""
        return self._server.receipts.sent() if self._server.receipts else []
