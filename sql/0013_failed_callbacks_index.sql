-- Status callbacks that failed for good (STATUS_CALLBACK_MAX_ATTEMPTS used), by when their event occurred:
-- POST /messaging/callbacks/retry sends them again after a receiver's outage. Few rows: a partial index.
CREATE INDEX IF NOT EXISTS message_events_failed_idx ON message_events (occurred_at)
    WHERE callback_state = 'failed';
