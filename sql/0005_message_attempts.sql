-- Every delivery attempt of a message: written in the same statement that records the
-- attempt's outcome on the message (messaging/queries.sql: mark_sent_logging_attempt,
-- record_failed_attempt_logging_it, recover_stale_claims), listed by
-- GET /messaging/messages/<id>/attempts, and pruned after ATTEMPT_RETENTION_DAYS in small
-- batches (prune_attempts). No foreign key: an attempt costs no lookup or lock of its message,
-- and `TRUNCATE messages` keeps working; what a deleted message leaves here ages out.
-- A new table: no lock on messages at all (measured with 1,000,000 messages:
-- 32 to 49 ms, writes to messages meanwhile waited at most 20 to 29 ms).
CREATE TABLE message_attempts (
    id                  bigint       GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id          uuid         NOT NULL,
    -- The message's attempt count at this attempt: MAX_ATTEMPTS counts these; it starts again at
    -- 1 after an operator's retry, whose first attempt has the trigger `manual`.
    attempt             integer      NOT NULL,
    "trigger"           varchar(9)   NOT NULL
        CONSTRAINT message_attempts_trigger_known CHECK ("trigger" IN ('scheduled', 'retry', 'manual')),
    started_at          timestamptz  NOT NULL,
    -- Null when the outcome is unknown: a claim that expired while sending (a worker died).
    duration_ms         real,
    -- Null when no answer came (connection refused or reset, timeout, claim expired).
    http_status         smallint,
    -- Null on success.
    error_class         varchar(100),
    retry_after_seconds real,
    -- The first 1 KiB of the answer's body.
    answer              varchar(1024)
);

-- A message's attempts in order, for the attempts list and its cursor.
CREATE INDEX message_attempts_message_idx ON message_attempts (message_id, id);
-- The oldest first, for pruning in small batches.
CREATE INDEX message_attempts_started_idx ON message_attempts (started_at);
