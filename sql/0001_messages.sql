-- The messages table, compatible with the seed's INSERT (id, content,
-- recipient_phone_number, sending_status, created_at, updated_at), plus the
-- bookkeeping that makes delivery exactly-once in normal operation.
CREATE TABLE messages (
    id                     uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    content                varchar(160) NOT NULL
        CONSTRAINT messages_content_length CHECK (char_length(content) BETWEEN 1 AND 160),
    recipient_phone_number varchar(20)  NOT NULL
        CONSTRAINT messages_recipient_e164 CHECK (recipient_phone_number ~ '^\+[1-9][0-9]{7,14}$'),
    -- 0 pending, 1 sent, 2 failed, 3 sending (claimed by a batch)
    sending_status         smallint     NOT NULL DEFAULT 0
        CONSTRAINT messages_status_known CHECK (sending_status IN (0, 1, 2, 3)),
    created_at             timestamptz  NOT NULL DEFAULT now(),
    updated_at             timestamptz  NOT NULL DEFAULT now(),
    attempts               integer      NOT NULL DEFAULT 0,
    next_attempt_at        timestamptz  NOT NULL DEFAULT now(),
    claimed_at             timestamptz,
    -- The claim's token is also the id of the Celery task that may send it:
    -- a task whose id no longer matches (a duplicate, a stale one) sends nothing.
    claim_token            uuid,
    sending_started_at     timestamptz,
    sent_at                timestamptz,
    webhook_message_id     varchar(255),
    last_error             varchar(500)
);

-- Due pending messages, oldest first: the batch's claim walks this index.
CREATE INDEX messages_pending_created_idx ON messages (created_at, id) WHERE sending_status = 0;
-- Sent messages, newest first, for GET /messaging/sent.
CREATE INDEX messages_sent_idx ON messages (sent_at DESC, id DESC) WHERE sending_status = 1;
-- Failed messages, newest first, for GET /messaging/failed.
CREATE INDEX messages_failed_idx ON messages (updated_at DESC, id DESC) WHERE sending_status = 2;
-- Claims, for returning stale ones to pending.
CREATE INDEX messages_claimed_idx ON messages (claimed_at) WHERE sending_status = 3;
