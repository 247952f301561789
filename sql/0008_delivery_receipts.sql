-- Delivery receipts: whether a sent message reached the phone (docs/records.md has the state model).
--
-- messages gains the delivery status the first final receipt set (or the receipt sweep's
-- `expired`), when it was delivered, and the provider's error code. Only the catalog changes:
-- the columns are nullable and the check is NOT VALID (0009 validates it without blocking writes).
SET LOCAL lock_timeout = '5s';

ALTER TABLE messages
    ADD COLUMN IF NOT EXISTS delivery_status varchar(11),
    ADD COLUMN IF NOT EXISTS delivered_at timestamptz,
    ADD COLUMN IF NOT EXISTS error_code varchar(64),
    DROP CONSTRAINT IF EXISTS messages_delivery_status_known,
    ADD CONSTRAINT messages_delivery_status_known
        CHECK (delivery_status IN ('delivered', 'undelivered', 'expired')) NOT VALID;

-- One row per provider messageId, the meeting point of a receipt and its message. mark_sent writes
-- it (with the message's id) while receipts are on; the API writes it when a receipt names a
-- messageId no message has yet (message_id null), keeping there the first final receipt until
-- mark_sent comes: both write the same primary key, so whichever is second waits for the first to
-- commit and sees what it wrote (messaging/postgres/queries.sql: mark_sent, keep_receipt_key).
-- Deleted with its message (prune_messages), or, never matched, after RECEIPT_ORPHAN_SECONDS.
CREATE TABLE IF NOT EXISTS receipt_inbox (
    webhook_message_id varchar(255) PRIMARY KEY,
    message_id         uuid,
    -- A receipt kept until its message is recorded sent: the status it sets, as messages has it.
    delivery_status    varchar(11),
    error_code         varchar(64),
    reported_at        timestamptz,
    -- When the API first heard of this messageId (null when mark_sent wrote the row first).
    received_at        timestamptz
);
-- The receipts never matched, oldest first, for the sweep that drops them.
CREATE INDEX IF NOT EXISTS receipt_inbox_unmatched_idx ON receipt_inbox (received_at) WHERE message_id IS NULL;

-- Every receipt taken, and what became of it: GET /messaging/messages/<id>/events lists them.
CREATE TABLE IF NOT EXISTS delivery_receipts (
    id                 bigint       GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_message_id varchar(255) NOT NULL,
    status             varchar(11)  NOT NULL
        CONSTRAINT delivery_receipts_status_known CHECK (status IN ('delivered', 'undelivered', 'failed')),
    error_code         varchar(64),
    -- The provider's timestamp, when it sent one.
    reported_at        timestamptz,
    received_at        timestamptz  NOT NULL DEFAULT now(),
    outcome            varchar(9)   NOT NULL
        CONSTRAINT delivery_receipts_outcome_known CHECK (outcome IN ('applied', 'duplicate', 'ignored', 'kept'))
);
CREATE INDEX IF NOT EXISTS delivery_receipts_message_idx ON delivery_receipts (webhook_message_id, id);
