"""The periodic sweep of delivery receipts, a small batch at a time: sent messages with no final receipt
RECEIPT_TIMEOUT_SECONDS after sent_at become `expired`, and receipts no message claimed within
RECEIPT_ORPHAN_SECONDS are dropped."""

from __future__ import annotations

from dataclasses import dataclass

from messaging.ops.pruning import in_batches
from messaging.postgres.receipts import ReceiptRecords
from messaging.settings import Settings

# At least once a minute, as the receipts' contract asks; each run is a few short statements.
SWEEP_EVERY_SECONDS = 30.0
SWEEP_BATCH = 500
# A run stops after this many batches of each kind; the next run goes on.
SWEEP_MAX_BATCHES = 20


@dataclass(frozen=True)
class Swept:
    expired: int = 0
    orphans: int = 0


def sweep(receipts: ReceiptRecords, settings: Settings, *, batch: int = SWEEP_BATCH, max_batches: int = SWEEP_MAX_BATCHES) -> Swept:
    """One run: expire, then drop orphans, `batch` rows per statement. Nothing while receipts are off."""
    if not settings.receipts_enabled:
        return Swept()
    expired = in_batches(lambda: receipts.expire(settings.receipt_timeout_seconds, batch), batch, max_batches)
    orphans = in_batches(lambda: receipts.drop_orphans(settings.receipt_orphan_seconds, batch), batch, max_batches)
    return Swept(expired, orphans)

