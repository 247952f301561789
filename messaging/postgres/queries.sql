-- name: message_columns
-- The columns a Message is read from (Message.from_row): every query that returns messages includes them.
id, content, recipient_phone_number, sending_status, attempts, webhook_message_id,
last_error, created_at, sent_at, updated_at, send_at, encoding, segments,
delivery_status, delivered_at, error_code

-- name: log_attempt
-- The common table expression that keeps a send's attempt in message_attempts, in the statement
-- that records its outcome: it reads the row the statement's `changed` step returned, and writes
-- only when %(log_attempt)s (no attempt when the delivery cache had the message: no POST).
logged AS (
    INSERT INTO message_attempts (message_id, attempt, "trigger", started_at, duration_ms, http_status,
                                  error_class, retry_after_seconds, answer)
    SELECT id, %(attempt)s::int, %(trigger)s::text, %(started_at)s::timestamptz, %(duration_ms)s::real,
           %(http_status)s::smallint, %(error_class)s::text, %(retry_after_seconds)s::real, %(answer)s::text
    FROM changed
    WHERE %(log_attempt)s
)

-- name: note_events
-- The common table expression that writes the events of its statement's `happened` step (message_id, type)
-- to the status callbacks' outbox (message_events), in the statement that made the change, only while
-- %(callbacks)s: with callbacks off, a constant false and nothing more.
noted AS (
    INSERT INTO message_events (message_id, type)
    SELECT message_id, type FROM happened
    WHERE %(callbacks)s
)

-- name: claims_waiting
-- The common table expression of the claims no worker has started yet: sends waiting in the queue,
-- along messages_claimed_idx.
claims_waiting AS (
    SELECT id FROM messages WHERE sending_status = 3 AND sending_started_at IS NULL
)

-- name: claim_due_messages
-- Claim due pending messages, each with a fresh claim token: oldest first by the time each became
-- due (send_at when scheduled, else created_at), along messages_pending_due_idx, which stops at now()
-- however many are scheduled for later; next_attempt_at holds back retries. Up to %(limit)s less the
-- claims still waiting for a worker, so batches never pile up sends that would expire in the queue.
WITH
-- include: claims_waiting
, waiting AS (
    SELECT count(*) AS claims FROM claims_waiting
), due AS (
    SELECT id FROM messages
    WHERE sending_status = 0 AND coalesce(send_at, created_at) <= now() AND next_attempt_at <= now()
    ORDER BY coalesce(send_at, created_at), id
    LIMIT GREATEST(%(limit)s - (SELECT claims FROM waiting), 0)
    FOR UPDATE SKIP LOCKED
)
UPDATE messages AS m
SET sending_status = 3, claimed_at = now(), claim_token = gen_random_uuid(),
    sending_started_at = NULL, updated_at = now()
FROM due
WHERE m.id = due.id
RETURNING m.id, m.claim_token, coalesce(m.send_at, m.created_at) AS due_at;

-- name: stale_sends
-- Claims that started sending more than %(timeout)s seconds ago and recorded no outcome: recovery asks
-- the delivery cache about these before it returns them.
SELECT id, claim_token, attempts, attempt_trigger, sending_started_at
FROM messages
WHERE sending_status = 3 AND sending_started_at < now() - make_interval(secs => %(timeout)s);

-- name: recover_stale_claims
-- Return claims older than %(timeout)s seconds to pending, but those in %(spare)s; one that had started
-- sending counts as an attempt whose outcome is unknown (its worker died), kept in message_attempts
-- by the same statement.
WITH stale AS (
    SELECT id, sending_started_at, attempt_trigger FROM messages
    WHERE sending_status = 3
      AND claimed_at < now() - make_interval(secs => %(timeout)s)
      AND (sending_started_at IS NULL OR sending_started_at < now() - make_interval(secs => %(timeout)s))
      AND NOT id = ANY(%(spare)s::uuid[])
    FOR UPDATE SKIP LOCKED
), recovered AS (
    UPDATE messages AS m
    SET sending_status = CASE
            WHEN stale.sending_started_at IS NOT NULL AND m.attempts + 1 >= %(max_attempts)s THEN 2
            ELSE 0 END,
        attempts = m.attempts + (stale.sending_started_at IS NOT NULL)::int,
        last_error = CASE WHEN stale.sending_started_at IS NULL THEN m.last_error
                          ELSE 'claim expired while sending' END,
        attempt_trigger = CASE WHEN stale.sending_started_at IS NULL THEN m.attempt_trigger ELSE 'retry' END,
        next_attempt_at = now(), claim_token = NULL, claimed_at = NULL,
        sending_started_at = NULL, updated_at = now()
    FROM stale
    WHERE m.id = stale.id
    RETURNING m.id, m.attempts, m.sending_status, stale.sending_started_at, stale.attempt_trigger
), logged AS (
    INSERT INTO message_attempts (message_id, attempt, "trigger", started_at, error_class)
    SELECT id, attempts, attempt_trigger, sending_started_at, 'claim_expired'
    FROM recovered
    WHERE sending_started_at IS NOT NULL
), happened AS (
    SELECT id AS message_id, 'message.failed' AS type FROM recovered WHERE sending_status = 2
),
-- include: note_events
SELECT id FROM recovered;

-- The statements of one claim (start_sending, release_claim, mark_sent, record_failed_attempt)
-- find its row by id and claim token alone. The token is set only by the claim (status 3) and
-- cleared by every way out of it, so it stands for `sending_status = 3`. Saying that too lets the
-- planner choose messages_claimed_idx (partial, status 3) over the primary key whenever its
-- statistics were taken with no claim in flight, and walk every claimed row per statement
-- instead of reading one row by the primary key (bench/PROFILE.md has the figures).
-- tests/integration/test_records.py checks the plan.

-- name: start_sending
-- Move a claimed message to in-flight, once per claim; no row means the task must not send.
UPDATE messages
SET sending_started_at = now(), updated_at = now()
WHERE id = %(id)s AND claim_token = %(token)s AND sending_started_at IS NULL
RETURNING id, content, recipient_phone_number, attempts, attempt_trigger;

-- name: release_claim
-- Give a claimed message back to pending, unsent and uncounted, due again after %(delay)s seconds; only
-- while it is at the stage the caller knows: not started sending, or (%(started)s) started by this task,
-- whose POST never left or cannot outlast the delay.
UPDATE messages
SET sending_status = 0, claim_token = NULL, claimed_at = NULL, sending_started_at = NULL,
    next_attempt_at = now() + make_interval(secs => %(delay)s), updated_at = now()
WHERE id = %(id)s AND claim_token = %(token)s AND (sending_started_at IS NOT NULL) = %(started)s
RETURNING id;

-- name: mark_sent
-- Record a delivery by the claim that made it, at %(sent_at)s (now when the delivery cache could not
-- say when); a late writer of an expired claim changes nothing.
-- With %(log_attempt)s, the attempt goes into message_attempts in the same statement (none when
-- the cache had it: no POST).
-- While receipts are on (%(receipts)s), the provider's messageId is recorded against the message in
-- receipt_inbox, and a receipt the API kept for it comes back to be applied here. ON CONFLICT sees a
-- receipt committed after this statement began, and waits for one being kept at this moment: a
-- receipt that arrives before this commits is never lost between the two. Its events: message.sent, and
-- the kept receipt's (message.delivered or message.undelivered) when one came back.
WITH matched AS (
    INSERT INTO receipt_inbox (webhook_message_id, message_id)
    SELECT %(webhook_message_id)s::text, id FROM messages
    WHERE %(receipts)s AND %(webhook_message_id)s::text IS NOT NULL AND id = %(id)s AND claim_token = %(token)s
    ON CONFLICT (webhook_message_id) DO UPDATE SET message_id = EXCLUDED.message_id
    RETURNING delivery_status, error_code, reported_at, received_at
), changed AS (
    UPDATE messages
    SET sending_status = 1, sent_at = coalesce(%(sent_at)s::timestamptz, now()), webhook_message_id = %(webhook_message_id)s,
        attempts = attempts + %(attempted)s, last_error = NULL, claim_token = NULL,
        claimed_at = NULL, sending_started_at = NULL, updated_at = now(),
        delivery_status = (SELECT delivery_status FROM matched),
        delivered_at = (SELECT coalesce(reported_at, received_at) FROM matched WHERE delivery_status = 'delivered'),
        error_code = (SELECT error_code FROM matched)
    WHERE id = %(id)s AND claim_token = %(token)s
    RETURNING id, delivery_status
), happened AS (
    SELECT id AS message_id, 'message.sent' AS type FROM changed
    UNION ALL
    SELECT id, 'message.' || delivery_status FROM changed WHERE delivery_status IS NOT NULL
),
-- include: note_events
,
-- include: log_attempt
SELECT id FROM changed;

-- name: record_failed_attempt
-- Count a failed attempt: back to pending after %(delay)s seconds, or failed when %(final)s. With
-- %(log_attempt)s, the attempt goes into message_attempts in the same statement.
WITH changed AS (
    UPDATE messages
    SET sending_status = CASE WHEN %(final)s OR attempts + 1 >= %(max_attempts)s THEN 2 ELSE 0 END,
        attempts = attempts + 1, last_error = %(error)s, attempt_trigger = 'retry',
        next_attempt_at = now() + make_interval(secs => %(delay)s),
        claim_token = NULL, claimed_at = NULL, sending_started_at = NULL, updated_at = now()
    WHERE id = %(id)s AND claim_token = %(token)s
    RETURNING id, sending_status, attempts
), happened AS (
    SELECT id AS message_id, 'message.failed' AS type FROM changed WHERE sending_status = 2
),
-- include: note_events
,
-- include: log_attempt
SELECT sending_status, attempts FROM changed;

-- name: list_sent
-- A page of sent messages, newest sent_at first (ties by id), by offset.
SELECT
-- include: message_columns
FROM messages
WHERE sending_status = 1
ORDER BY sent_at DESC, id DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: list_sent_after
-- A page of sent messages after the keyset cursor (sent_at, id); same cost at any depth.
SELECT
-- include: message_columns
FROM messages
WHERE sending_status = 1 AND (sent_at, id) < (%(after_time)s, %(after_id)s)
ORDER BY sent_at DESC, id DESC
LIMIT %(limit)s;

-- name: list_failed
-- A page of failed messages, most recently failed first (ties by id), by offset.
SELECT
-- include: message_columns
FROM messages
WHERE sending_status = 2
ORDER BY updated_at DESC, id DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: list_failed_after
-- A page of failed messages after the keyset cursor (updated_at, id).
SELECT
-- include: message_columns
FROM messages
WHERE sending_status = 2 AND (updated_at, id) < (%(after_time)s, %(after_id)s)
ORDER BY updated_at DESC, id DESC
LIMIT %(limit)s;

-- name: get_message
-- One message by id.
SELECT
-- include: message_columns
FROM messages
WHERE id = %(id)s;

-- name: insert_message
-- Store a new pending message, its encoding and segments; a scheduled one is not due before %(send_at)s.
INSERT INTO messages (recipient_phone_number, content, send_at, next_attempt_at, encoding, segments)
VALUES (%(recipient_phone_number)s, %(content)s, %(send_at)s::timestamptz,
        coalesce(%(send_at)s::timestamptz, now()), %(encoding)s, %(segments)s)
RETURNING
-- include: message_columns
;

-- name: retry_failed
-- Put a failed message back to pending with its attempts reset; its old error no longer describes
-- it, and its next attempt is `manual`.
UPDATE messages
SET sending_status = 0, attempts = 0, last_error = NULL, attempt_trigger = 'manual', next_attempt_at = now(),
    updated_at = now()
WHERE id = %(id)s AND sending_status = 2
RETURNING
-- include: message_columns
;

-- name: count_by_status
-- How many messages are in each status.
SELECT sending_status, count(*) AS total FROM messages GROUP BY sending_status;

-- name: count_in_status
-- How many messages are in one status (an index-only scan: it grows with the status's rows).
SELECT count(*) AS total FROM messages WHERE sending_status = %(status)s;

-- name: count_in_status_up_to
-- How many messages are in one status, counting no further than %(cap)s: cheap at any size.
SELECT count(*) AS total FROM (SELECT 1 FROM messages WHERE sending_status = %(status)s LIMIT %(cap)s) AS capped;

-- name: cancel_message
-- Cancel a pending message (a claimed one is already `sending`: too late); its event is message.canceled.
WITH changed AS (
    UPDATE messages
    SET sending_status = 4, updated_at = now()
    WHERE id = %(id)s AND sending_status = 0
    RETURNING
-- include: message_columns
), happened AS (
    SELECT id AS message_id, 'message.canceled' AS type FROM changed
),
-- include: note_events
SELECT * FROM changed;

-- name: retry_failed_matching
-- Up to %(limit)s failed messages, most recently failed first, that failed in
-- [%(failed_after)s, %(failed_before)s) with %(error_contains)s in last_error (any bound may be null):
-- back to pending as retry_failed does, unless %(dry_run)s. How many matched, and how many went back.
WITH matching AS (
    SELECT id FROM messages
    WHERE sending_status = 2
      AND updated_at >= coalesce(%(failed_after)s::timestamptz, '-infinity')
      AND updated_at < coalesce(%(failed_before)s::timestamptz, 'infinity')
      AND strpos(lower(coalesce(last_error, '')), lower(coalesce(%(error_contains)s::text, ''))) > 0
    ORDER BY updated_at DESC, id DESC
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), retried AS (
    UPDATE messages AS m
    SET sending_status = 0, attempts = 0, last_error = NULL, attempt_trigger = 'manual', next_attempt_at = now(),
        updated_at = now()
    FROM matching
    WHERE m.id = matching.id AND NOT %(dry_run)s
    RETURNING 1
)
SELECT (SELECT count(*) FROM matching) AS matched, (SELECT count(*) FROM retried) AS retried;

-- name: list_attempts
-- A message's delivery attempts in order, after the attempt id %(after_id)s (0 for the first page).
SELECT id, message_id, attempt, "trigger", started_at, duration_ms, http_status, error_class,
       retry_after_seconds, answer
FROM message_attempts
WHERE message_id = %(message_id)s AND id > %(after_id)s
ORDER BY id
LIMIT %(limit)s;

-- name: prune_attempts
-- Delete up to %(limit)s attempts that started more than %(days)s days ago, oldest first.
WITH doomed AS (
    SELECT id FROM message_attempts
    WHERE started_at < now() - make_interval(days => %(days)s)
    ORDER BY started_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), deleted AS (
    DELETE FROM message_attempts AS a
    USING doomed
    WHERE a.id = doomed.id
    RETURNING 1
)
SELECT count(*) AS total FROM deleted;

-- name: prune_messages
-- Delete up to %(limit)s messages in a final state (sent, failed, canceled) whose last change is more
-- than %(days)s days old, oldest first, with their attempts. Each status is found through its own
-- index (sent by sent_at, failed by updated_at, canceled through the status index); pending,
-- sending and scheduled messages are never candidates. Their receipts and events go with them. (FOR UPDATE is not allowed in a UNION: each
-- status locks its rows in a CTE of its own.)
WITH sent AS (
    SELECT id, sent_at AS final_at FROM messages
    WHERE sending_status = 1 AND sent_at < now() - make_interval(days => %(days)s)
    ORDER BY sent_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
), failed AS (
    SELECT id, updated_at AS final_at FROM messages
    WHERE sending_status = 2 AND updated_at < now() - make_interval(days => %(days)s)
    ORDER BY updated_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
), canceled AS (
    SELECT id, updated_at AS final_at FROM messages
    WHERE sending_status = 4 AND updated_at < now() - make_interval(days => %(days)s)
    LIMIT %(limit)s FOR UPDATE SKIP LOCKED
), doomed AS (
    SELECT id FROM (SELECT * FROM sent UNION ALL SELECT * FROM failed UNION ALL SELECT * FROM canceled) AS final
    ORDER BY final_at
    LIMIT %(limit)s
), deleted AS (
    DELETE FROM messages AS m
    USING doomed
    WHERE m.id = doomed.id
    RETURNING m.id, m.webhook_message_id
), attempts AS (
    DELETE FROM message_attempts AS a
    USING deleted
    WHERE a.message_id = deleted.id
    RETURNING 1
), receipt_keys AS (
    DELETE FROM receipt_inbox AS i
    USING deleted
    WHERE i.webhook_message_id = deleted.webhook_message_id
), receipts AS (
    DELETE FROM delivery_receipts AS r
    USING deleted
    WHERE r.webhook_message_id = deleted.webhook_message_id
), events AS (
    DELETE FROM message_events AS e
    USING deleted
    WHERE e.message_id = deleted.id
)
SELECT (SELECT count(*) FROM deleted) AS messages, (SELECT count(*) FROM attempts) AS attempts;

-- name: delivery_states
-- The status of each of the messages %(ids)s that exists (the audit's check of cached deliveries).
SELECT id, sending_status FROM messages WHERE id = ANY(%(ids)s);

-- name: count_stale_claims
-- Claims the next batch would return to pending: older than %(timeout)s seconds, and their send too.
SELECT count(*) AS total, min(claimed_at) AS oldest
FROM messages
WHERE sending_status = 3
  AND claimed_at < now() - make_interval(secs => %(timeout)s)
  AND (sending_started_at IS NULL OR sending_started_at < now() - make_interval(secs => %(timeout)s));

-- name: count_sent_since
-- Messages this service sent (POSTed: attempts > 0) that PostgreSQL recorded as sent at or after %(since)s.
SELECT count(*) AS total FROM messages WHERE sending_status = 1 AND sent_at >= %(since)s AND attempts > 0;

-- name: keep_service_key
-- Keep %(value)s under %(name)s unless a key is kept there already (the first process's wins).
INSERT INTO service_keys (name, value) VALUES (%(name)s, %(value)s) ON CONFLICT (name) DO NOTHING RETURNING value;

-- name: service_key
-- The key kept under %(name)s (a statement of its own: it sees a key another process committed meanwhile).
SELECT value FROM service_keys WHERE name = %(name)s;

-- name: list_sent_by_delivery
-- A page of sent messages whose delivery status is %(delivery_status)s (`unknown`: none yet), newest
-- sent_at first, by offset, along messages_sent_delivery_idx.
SELECT
-- include: message_columns
FROM messages
WHERE sending_status = 1 AND coalesce(delivery_status, 'unknown') = %(delivery_status)s
ORDER BY sent_at DESC, id DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: list_sent_by_delivery_after
-- The same after the keyset cursor (sent_at, id).
SELECT
-- include: message_columns
FROM messages
WHERE sending_status = 1 AND coalesce(delivery_status, 'unknown') = %(delivery_status)s
  AND (sent_at, id) < (%(after_time)s, %(after_id)s)
ORDER BY sent_at DESC, id DESC
LIMIT %(limit)s;

-- name: count_sent_by_delivery_up_to
-- How many sent messages have the delivery status %(delivery_status)s, counting no further than %(cap)s.
SELECT count(*) AS total FROM (
    SELECT 1 FROM messages
    WHERE sending_status = 1 AND coalesce(delivery_status, 'unknown') = %(delivery_status)s
    LIMIT %(cap)s
) AS capped;

-- name: keep_receipt_key
-- Make sure the provider's messageId %(webhook_message_id)s has its row in receipt_inbox (the API's first
-- step with a receipt). While mark_sent is writing the same row, this waits for it to commit.
INSERT INTO receipt_inbox (webhook_message_id, received_at) VALUES (%(webhook_message_id)s, now())
ON CONFLICT (webhook_message_id) DO NOTHING;

-- name: lock_receipt_key
-- The messageId's row, locked until the receipt is recorded: its message (if recorded sent) and the
-- receipt kept for it (if not).
SELECT message_id, delivery_status
FROM receipt_inbox
WHERE webhook_message_id = %(webhook_message_id)s
FOR UPDATE;

-- name: lock_delivery
-- A sent message's delivery status and sent_at, locked until the receipt is recorded (the expiry
-- sweep skips it meanwhile, or holds it first).
SELECT delivery_status, sent_at FROM messages WHERE id = %(id)s FOR UPDATE;

-- name: record_receipt
-- Keep a receipt in the history with its %(outcome)s; with %(keep)s, in receipt_inbox until its message
-- is recorded sent; with %(apply)s, on its message %(message_id)s, whose delivery status is still null
-- (its event: message.delivered or message.undelivered).
WITH kept AS (
    UPDATE receipt_inbox
    SET delivery_status = %(delivery_status)s, error_code = %(error_code)s, reported_at = %(reported_at)s
    WHERE webhook_message_id = %(webhook_message_id)s AND %(keep)s
), applied AS (
    UPDATE messages
    SET delivery_status = %(delivery_status)s, error_code = %(error_code)s, updated_at = now(),
        delivered_at = CASE WHEN %(delivery_status)s = 'delivered' THEN coalesce(%(reported_at)s, now()) END
    WHERE id = %(message_id)s AND %(apply)s AND delivery_status IS NULL
    RETURNING id, delivery_status
), happened AS (
    SELECT id AS message_id, 'message.' || delivery_status AS type FROM applied
),
-- include: note_events
INSERT INTO delivery_receipts (webhook_message_id, status, error_code, reported_at, outcome)
VALUES (%(webhook_message_id)s, %(status)s, %(error_code)s, %(reported_at)s, %(outcome)s)
RETURNING received_at;

-- name: list_receipts
-- The receipts taken for the provider's messageId %(webhook_message_id)s, in order of arrival.
SELECT id, status, error_code, reported_at, received_at, outcome
FROM delivery_receipts
WHERE webhook_message_id = %(webhook_message_id)s
ORDER BY id
LIMIT %(limit)s;

-- name: expire_deliveries
-- Up to %(limit)s sent messages with no final receipt %(timeout)s seconds after sent_at, oldest first:
-- delivery status `expired` (its event: message.expired). A message a receipt is being applied to right now is skipped.
WITH due AS (
    SELECT id FROM messages
    WHERE sending_status = 1 AND coalesce(delivery_status, 'unknown') = 'unknown'
      AND sent_at < now() - make_interval(secs => %(timeout)s)
    ORDER BY sent_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), changed AS (
    UPDATE messages AS m
    SET delivery_status = 'expired', updated_at = now()
    FROM due
    WHERE m.id = due.id
    RETURNING m.id
), happened AS (
    SELECT id AS message_id, 'message.expired' AS type FROM changed
),
-- include: note_events
SELECT id FROM changed;

-- name: drop_orphan_receipts
-- Up to %(limit)s receipts kept longer than %(seconds)s seconds for a messageId no message was recorded
-- with: dropped, with their history. How many.
WITH doomed AS (
    SELECT webhook_message_id FROM receipt_inbox
    WHERE message_id IS NULL AND received_at < now() - make_interval(secs => %(seconds)s)
    ORDER BY received_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), dropped AS (
    DELETE FROM receipt_inbox AS i
    USING doomed
    WHERE i.webhook_message_id = doomed.webhook_message_id
    RETURNING i.webhook_message_id
), history AS (
    DELETE FROM delivery_receipts AS r
    USING dropped
    WHERE r.webhook_message_id = dropped.webhook_message_id
)
SELECT count(*) AS total FROM dropped;

-- name: count_delivered_unsent
-- Messages with a delivery status that are not sent (the audit: a receipt applies to sent messages only).
SELECT count(*) AS total FROM messages WHERE delivery_status IS NOT NULL AND sending_status <> 1;

-- name: dispatch_callback_batch
-- Hand out one batch of status callback events due now, oldest due first: up to %(size)s events, all with
-- the dispatch token %(token)s (the id of the task that POSTs them) and a lease of %(lease)s seconds. A
-- batch whose task never reported (a crashed worker) is due again when its lease ends. Nothing while
-- %(batches)s batches are handed out and unreported, so a slow callback receiver holds at most that many
-- threads across all workers; nothing when fewer than %(at_least)s are due. While %(sends_queued)s claims or
-- more wait for a worker to start them (sends queue up), callbacks yield to sends: %(batches_while_sends_queued)s
-- batches in flight instead (the claims counted no further than that).
WITH
-- include: claims_waiting
, sends_queued AS (
    SELECT count(*) >= %(sends_queued)s AS yes FROM (SELECT 1 FROM claims_waiting LIMIT %(sends_queued)s) AS waiting
), in_flight AS (
    SELECT count(DISTINCT dispatch_token) AS batches FROM message_events
    WHERE dispatch_token IS NOT NULL AND callback_state = 'pending' AND next_attempt_at > now()
), due AS (
    SELECT id FROM message_events
    WHERE callback_state = 'pending' AND next_attempt_at <= now()
      AND (SELECT batches FROM in_flight)
          < CASE WHEN (SELECT yes FROM sends_queued) THEN %(batches_while_sends_queued)s ELSE %(batches)s END
    ORDER BY next_attempt_at, seq
    LIMIT %(size)s
    FOR UPDATE SKIP LOCKED
)
UPDATE message_events AS e
SET dispatch_token = %(token)s, next_attempt_at = now() + make_interval(secs => %(lease)s)
FROM due
WHERE e.id = due.id AND (SELECT count(*) FROM due) >= %(at_least)s
RETURNING e.id;

-- name: dispatched_batch
-- The events the dispatch %(token)s still has (none once its lease ended and another took them), oldest
-- first, each with its message's columns (all null when retention deleted the message meanwhile).
WITH batch AS (
    SELECT id AS event_id, message_id AS event_message_id, type AS event_type, occurred_at AS event_occurred_at,
           attempts AS event_attempts, seq AS event_seq
    FROM message_events
    WHERE dispatch_token = %(token)s AND callback_state = 'pending'
)
SELECT event_id, event_message_id, event_type, event_occurred_at, event_attempts,
-- include: message_columns
FROM batch LEFT JOIN messages ON messages.id = batch.event_message_id
ORDER BY event_seq;

-- name: record_callbacks
-- The outcomes of one batch, the dispatch %(token)s, event by event (the arrays run in parallel). A POSTed
-- event counts an attempt: delivered on a 2xx; else failed once it has used %(max_attempts)s attempts, or
-- pending again after its delay. One not POSTed (the batch's time ran out, or no slot was free) is given
-- back uncounted, due after its delay; one whose message is gone is failed at once (`final`).
UPDATE message_events AS e
SET attempts = e.attempts + o.posted::int,
    dispatch_token = NULL,
    last_http_status = CASE WHEN o.posted THEN o.http_status ELSE e.last_http_status END,
    last_error = CASE WHEN o.posted OR o.final THEN o.error ELSE e.last_error END,
    callback_state = CASE WHEN o.delivered THEN 'delivered'
                          WHEN o.final OR (o.posted AND e.attempts + 1 >= %(max_attempts)s) THEN 'failed'
                          ELSE 'pending' END,
    delivered_at = CASE WHEN o.delivered THEN now() END,
    next_attempt_at = now() + make_interval(secs => o.delay)
FROM unnest(%(ids)s::uuid[], %(posted)s::bool[], %(delivered)s::bool[], %(http_status)s::smallint[],
            %(error)s::text[], %(delay)s::float8[], %(final)s::bool[])
     AS o(id, posted, delivered, http_status, error, delay, final)
WHERE e.id = o.id AND e.dispatch_token = %(token)s
RETURNING e.id, e.callback_state;

-- name: list_events
-- A message's events, in the order they were written, and the state of their status callbacks.
SELECT id, type, occurred_at, callback_state, attempts, last_http_status, last_error, delivered_at
FROM message_events
WHERE message_id = %(message_id)s
ORDER BY seq
LIMIT %(limit)s;

-- name: callbacks_overdue
-- How long the status callback event waiting longest past its due time has waited, in seconds (0 when none
-- is overdue): the first entry of message_events_due_idx. A batch handed out is due again only when its lease
-- ends, so this counts events no task holds: those the dispatcher has not reached, and a crashed task's.
SELECT coalesce(extract(epoch FROM now() - min(next_attempt_at)), 0)::float8 AS seconds
FROM message_events
WHERE callback_state = 'pending' AND next_attempt_at <= now();

-- name: retry_failed_callbacks
-- Up to %(limit)s status callback events that failed for good, whose change occurred in
-- [%(occurred_after)s, %(occurred_before)s) (either bound may be null), oldest first: pending again with their
-- attempts reset, due now, unless %(dry_run)s. Each keeps its id, so its `webhook-id` is the one the receiver
-- may already have seen. Events whose message is gone (retention) are left: they would fail at once. How many
-- matched, and how many went back.
WITH matching AS (
    SELECT e.id FROM message_events AS e
    WHERE e.callback_state = 'failed'
      AND e.occurred_at >= coalesce(%(occurred_after)s::timestamptz, '-infinity')
      AND e.occurred_at < coalesce(%(occurred_before)s::timestamptz, 'infinity')
      AND EXISTS (SELECT 1 FROM messages AS m WHERE m.id = e.message_id)
    ORDER BY e.occurred_at, e.seq
    LIMIT %(limit)s
    FOR UPDATE OF e SKIP LOCKED
), retried AS (
    UPDATE message_events AS e
    SET callback_state = 'pending', attempts = 0, dispatch_token = NULL, next_attempt_at = now()
    FROM matching
    WHERE e.id = matching.id AND NOT %(dry_run)s
    RETURNING 1
)
SELECT (SELECT count(*) FROM matching) AS matched, (SELECT count(*) FROM retried) AS retried;
