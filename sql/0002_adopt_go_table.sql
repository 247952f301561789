-- Adopt the messages table in place: the Go service's (as 0001 creates it), or one of
-- ours that the first release's 0001 created whole. Each statement adds only what is
-- missing, so a fresh database, one of ours and the Go service's end at one schema,
-- and a run cut short is finished by the next.
--
-- Locks: the file runs as several transactions (split at `-- migrate: commit`), so
-- nothing slow happens under ACCESS EXCLUSIVE, which blocks reads too. Column and rule
-- changes are catalog-only (that lock for milliseconds); backfills take row locks only;
-- each index build holds off writes, not reads, until it commits; validations block
-- nothing. `python -m bench.adoption` measures it on 1,000,000 rows.

-- Step 1, catalog only: columns, defaults, the content width. `now()` is evaluated once,
-- so the new NOT NULL columns fill without a rewrite; varchar(100) to varchar(160) is
-- binary compatible, so the widening neither rewrites nor scans.
ALTER TABLE messages
    ALTER COLUMN id SET DEFAULT gen_random_uuid(),
    ALTER COLUMN sending_status SET DEFAULT 0,
    ALTER COLUMN created_at SET DEFAULT now(),
    ALTER COLUMN updated_at SET DEFAULT now(),
    ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS next_attempt_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS claimed_at timestamptz,
    ADD COLUMN IF NOT EXISTS claim_token uuid,
    ADD COLUMN IF NOT EXISTS sending_started_at timestamptz,
    ADD COLUMN IF NOT EXISTS sent_at timestamptz,
    ADD COLUMN IF NOT EXISTS webhook_message_id varchar(255),
    ADD COLUMN IF NOT EXISTS last_error varchar(500);

DO $$
BEGIN
    IF (SELECT atttypmod - 4 FROM pg_attribute WHERE attrelid = 'messages'::regclass AND attname = 'content') < 160 THEN
        ALTER TABLE messages ALTER COLUMN content TYPE varchar(160);
    END IF;
    -- GORM left the times nullable. From now on no row gets a NULL time; the rows that
    -- have one are filled in step 2, and the columns become NOT NULL in step 5. Each lookup of
    -- these CHECKs names contype 'c': PostgreSQL 18 keeps a column's NOT NULL in pg_constraint
    -- under the same name, <table>_<column>_not_null, and dropping that one makes the column nullable.
    IF NOT (SELECT attnotnull FROM pg_attribute WHERE attrelid = 'messages'::regclass AND attname = 'created_at')
       AND NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = 'messages'::regclass AND conname = 'messages_created_at_not_null' AND contype = 'c') THEN
        ALTER TABLE messages
            ADD CONSTRAINT messages_created_at_not_null CHECK (created_at IS NOT NULL) NOT VALID,
            ADD CONSTRAINT messages_updated_at_not_null CHECK (updated_at IS NOT NULL) NOT VALID;
    END IF;
    -- The Go service checked nothing: until step 3 puts the table's rules in place, this
    -- guard keeps any new message from being pending with a number or content it could
    -- never be sent with, or from having a status the table does not know. The rows that
    -- already are become failed in step 2, without holding off anyone's writes.
    IF NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = 'messages'::regclass AND conname = 'messages_status_known')
       AND NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = 'messages'::regclass AND conname = 'messages_adoption_guard') THEN
        ALTER TABLE messages ADD CONSTRAINT messages_adoption_guard CHECK (
            sending_status IN (1, 2)
            OR (sending_status = 0 AND recipient_phone_number ~ '^\+[1-9][0-9]{7,14}$' AND char_length(content) BETWEEN 1 AND 160)
        ) NOT VALID;
    END IF;
END $$;

-- migrate: commit
-- Step 2, row locks only: messages that cannot be sent, the times GORM left NULL, and
-- sent_at for messages sent before (so that they list and page by cursor like any other).
--
-- A pending message that cannot be sent becomes failed now, with last_error saying why,
-- rather than at its claim: a claim is one statement for the whole batch, and a row
-- breaking a CHECK would fail it for every message behind it.
DO $$
DECLARE
    bad_number constant text := 'not sent: recipient_phone_number is not E.164 (+ then 8 to 15 digits, the first not 0); found when adopting the Go service''s table';
    bad_content constant text := 'not sent: content is empty or over 160 characters; found when adopting the Go service''s table';
    unknown_status constant text := 'not sent: sending_status %s is not one the Go service defined; found when adopting its table';
    found record;
    backfilled bigint;
BEGIN
    IF EXISTS (SELECT FROM pg_constraint WHERE conrelid = 'messages'::regclass AND conname = 'messages_adoption_guard') THEN
        WITH failed_now AS (
            UPDATE messages
            SET sending_status = 2, created_at = coalesce(created_at, updated_at, now()), updated_at = now(),
                last_error = CASE
                    WHEN sending_status <> 0 THEN format(unknown_status, sending_status)
                    WHEN recipient_phone_number !~ '^\+[1-9][0-9]{7,14}$' THEN bad_number
                    ELSE bad_content END
            WHERE sending_status NOT IN (1, 2)
              AND (sending_status <> 0
                   OR recipient_phone_number !~ '^\+[1-9][0-9]{7,14}$'
                   OR char_length(content) NOT BETWEEN 1 AND 160)
            RETURNING last_error
        )
        SELECT count(*) FILTER (WHERE last_error = bad_number) AS number,
               count(*) FILTER (WHERE last_error = bad_content) AS content,
               count(*) FILTER (WHERE last_error NOT IN (bad_number, bad_content)) AS status
        INTO found FROM failed_now;
        IF found.number + found.content > 0 THEN
            RAISE NOTICE 'pending messages that cannot be sent: % (recipient_phone_number not E.164: %, content empty: %); they are now failed, with last_error saying why',
                found.number + found.content, found.number, found.content;
        END IF;
        IF found.status > 0 THEN
            RAISE NOTICE 'messages with a sending_status the Go service did not define: %; they are now failed, with last_error naming it',
                found.status;
        END IF;
    END IF;
    IF EXISTS (SELECT FROM pg_constraint WHERE conrelid = 'messages'::regclass AND conname = 'messages_created_at_not_null' AND contype = 'c') THEN
        UPDATE messages
        SET created_at = coalesce(created_at, updated_at, now()),
            updated_at = coalesce(updated_at, created_at, now())
        WHERE created_at IS NULL OR updated_at IS NULL;
    END IF;
    UPDATE messages SET sent_at = updated_at WHERE sending_status = 1 AND sent_at IS NULL;
    GET DIAGNOSTICS backfilled = ROW_COUNT;
    IF backfilled > 0 THEN
        RAISE NOTICE 'sent messages without sent_at: %; set from their updated_at, the time they were sent', backfilled;
    END IF;
END $$;

-- migrate: commit
-- Step 3, catalog only: the table's rules replace the guard. NOT VALID: they hold for
-- every row written from now on, without a scan under this lock (step 5 validates).
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_constraint WHERE conrelid = 'messages'::regclass AND conname = 'messages_adoption_guard') THEN
        ALTER TABLE messages
            ADD CONSTRAINT messages_content_length CHECK (char_length(content) BETWEEN 1 AND 160) NOT VALID,
            ADD CONSTRAINT messages_recipient_e164 CHECK (recipient_phone_number ~ '^\+[1-9][0-9]{7,14}$') NOT VALID,
            -- 0 pending, 1 sent, 2 failed, 3 sending (claimed by a batch)
            ADD CONSTRAINT messages_status_known CHECK (sending_status IN (0, 1, 2, 3)) NOT VALID,
            DROP CONSTRAINT messages_adoption_guard;
    END IF;
END $$;

-- migrate: commit
-- Step 4: the indexes of the hot queries (see queries.sql), one transaction each: a build
-- holds off writes (not reads) until it commits.
-- Due pending messages, oldest first: the batch's claim walks this index.
CREATE INDEX IF NOT EXISTS messages_pending_created_idx ON messages (created_at, id) WHERE sending_status = 0;

-- migrate: commit
-- Sent messages, newest first, for GET /messaging/sent.
CREATE INDEX IF NOT EXISTS messages_sent_idx ON messages (sent_at DESC, id DESC) WHERE sending_status = 1;

-- migrate: commit
-- Failed messages, newest first, for GET /messaging/failed.
CREATE INDEX IF NOT EXISTS messages_failed_idx ON messages (updated_at DESC, id DESC) WHERE sending_status = 2;

-- migrate: commit
-- Claims, for returning stale ones to pending.
CREATE INDEX IF NOT EXISTS messages_claimed_idx ON messages (claimed_at) WHERE sending_status = 3;

-- migrate: commit
-- Step 5: validate what every row obeys (a scan that blocks neither reads nor writes).
-- Messages sent or failed before the adoption may break a CHECK; they are kept as they
-- were and never sent, and that CHECK stays NOT VALID: it holds for every row written.
DO $$
DECLARE
    rule record;
    breaking bigint;
BEGIN
    FOR rule IN
        SELECT conname, pg_get_expr(conbin, conrelid) AS expression FROM pg_constraint
        WHERE conrelid = 'messages'::regclass AND contype = 'c' AND NOT convalidated ORDER BY conname
    LOOP
        BEGIN
            EXECUTE format('ALTER TABLE messages VALIDATE CONSTRAINT %I', rule.conname);
        EXCEPTION WHEN check_violation THEN
            EXECUTE format('SELECT count(*) FROM messages WHERE NOT (%s)', rule.expression) INTO breaking;
            RAISE NOTICE 'sent or failed messages that break %: %; they are kept as they are and never sent; the rule holds for every row written from now on',
                rule.conname, breaking;
        END;
    END LOOP;
    -- With a valid CHECK (x IS NOT NULL) in place, SET NOT NULL skips its own scan.
    IF EXISTS (SELECT FROM pg_constraint WHERE conrelid = 'messages'::regclass AND conname = 'messages_created_at_not_null' AND contype = 'c') THEN
        ALTER TABLE messages ALTER COLUMN created_at SET NOT NULL, ALTER COLUMN updated_at SET NOT NULL;
        ALTER TABLE messages DROP CONSTRAINT messages_created_at_not_null, DROP CONSTRAINT messages_updated_at_not_null;
    END IF;
END $$;
-- The Go service's index served its own queries only. Dropping an index locks the table
-- out of reads too, so it comes last, just before the commit, and not with the builds.
DROP INDEX IF EXISTS idx_messages_sending_status_created_at;
