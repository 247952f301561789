-- Status callbacks go out in batches (messaging/ops/callbacks.py): a task reads its batch by its dispatch
-- token, and the dispatcher counts the batches in flight by their tokens. Only handed-out events have one.
CREATE INDEX IF NOT EXISTS message_events_dispatch_idx ON message_events (dispatch_token)
    WHERE dispatch_token IS NOT NULL;
