-- Status callbacks: the outbox of events about messages (docs/records.md has the event model).
--
-- Each statement that changes a message's state (messaging/postgres/queries.sql: mark_sent,
-- record_failed_attempt, recover_stale_claims, cancel_message, record_receipt, expire_deliveries)
-- writes its event here in the same statement, while status callbacks are on: the event commits
-- with the change or not at all. The workers POST each one to STATUS_CALLBACK_URL until it is
-- delivered or has used STATUS_CALLBACK_MAX_ATTEMPTS; the row stays, with its callback state, for
-- GET /messaging/messages/<id>/events, until its message is deleted by retention.
CREATE TABLE IF NOT EXISTS message_events (
    -- The Standard Webhooks webhook-id of every POST of this event.
    id              uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    -- The order events were written in (two can share a statement and its now()).
    seq             bigint       GENERATED ALWAYS AS IDENTITY,
    message_id      uuid         NOT NULL,
    type            varchar(24)  NOT NULL
        CONSTRAINT message_events_type_known CHECK (type IN ('message.sent', 'message.failed', 'message.delivered',
                                                             'message.undelivered', 'message.expired', 'message.canceled')),
    occurred_at     timestamptz  NOT NULL DEFAULT now(),
    callback_state  varchar(9)   NOT NULL DEFAULT 'pending'
        CONSTRAINT message_events_callback_state_known CHECK (callback_state IN ('pending', 'delivered', 'failed')),
    attempts        smallint     NOT NULL DEFAULT 0,
    -- When the next POST is due; while a task has it (dispatch_token set), when that task's lease ends.
    next_attempt_at timestamptz  NOT NULL DEFAULT now(),
    dispatch_token  uuid,
    last_http_status smallint,
    last_error      text,
    delivered_at    timestamptz
);
CREATE INDEX IF NOT EXISTS message_events_message_idx ON message_events (message_id, seq);
-- The events still to POST, by when they are due: the dispatcher reads only these.
CREATE INDEX IF NOT EXISTS message_events_due_idx ON message_events (next_attempt_at) WHERE callback_state = 'pending';
