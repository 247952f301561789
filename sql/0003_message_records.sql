-- The message's records on the messages table: status 4 (canceled), the time a scheduled send was asked
-- for, the SMS encoding and segments measured at create time, and what triggers the next
-- delivery attempt (scheduled, retry, manual). Rows from before this migration, and rows the
-- seed's INSERT adds, have no encoding and segments stored: the service measures their
-- content when it reads them (messaging/models.py).
--
-- Only the catalog changes: no row is read or rewritten (the new columns are nullable or have
-- a constant default, and the checks are NOT VALID, validated by 0004 under a lock that lets
-- reads and writes through). The ACCESS EXCLUSIVE lock this takes is held for milliseconds.
-- Measured on 1,000,000 rows (PostgreSQL 15, 2 cores): the migration took 6 to 56 ms (three runs), and a
-- single-row UPDATE plus a seed INSERT from a second connection, in a loop, waited at most
-- 14 to 35 ms: the noise of a shared machine, not the lock.
-- lock_timeout: a long transaction holding the table makes this fail at once rather than
-- queue every other statement behind it; run migrate again later.
SET LOCAL lock_timeout = '5s';

ALTER TABLE messages
    DROP CONSTRAINT IF EXISTS messages_status_known,
    -- 0 pending, 1 sent, 2 failed, 3 sending (claimed by a batch), 4 canceled
    ADD CONSTRAINT messages_status_known CHECK (sending_status IN (0, 1, 2, 3, 4)) NOT VALID,
    -- When the creator asked for it to go out; it is also the message's first next_attempt_at.
    ADD COLUMN send_at timestamptz,
    ADD COLUMN encoding varchar(5),
    ADD COLUMN segments smallint,
    -- Why the message is pending: its first send, an automatic retry or an operator's.
    ADD COLUMN attempt_trigger varchar(9) NOT NULL DEFAULT 'scheduled',
    ADD CONSTRAINT messages_encoding_known CHECK (encoding IN ('GSM-7', 'UCS-2')) NOT VALID,
    ADD CONSTRAINT messages_segments_positive CHECK (segments >= 1) NOT VALID,
    ADD CONSTRAINT messages_attempt_trigger_known
        CHECK (attempt_trigger IN ('scheduled', 'retry', 'manual')) NOT VALID;
