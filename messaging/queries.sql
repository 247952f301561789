-- name: claim_due_messages
-- Claim up to %(limit)s due pending messages, oldest first, each with a fresh claim token.
WITH due AS (
    SELECT id FROM messages
    WHERE sending_status = 0 AND next_attempt_at <= now()
    ORDER BY created_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE messages AS m
SET sending_status = 3, claimed_at = now(), claim_token = gen_random_uuid(),
    sending_started_at = NULL, updated_at = now()
FROM due
WHERE m.id = due.id
RETURNING m.id, m.claim_token, m.created_at;

-- name: recover_stale_claims
-- Return claims older than %(timeout)s seconds to pending; one that had started sending counts as an attempt.
UPDATE messages
SET sending_status = CASE
        WHEN sending_started_at IS NOT NULL AND attempts + 1 >= %(max_attempts)s THEN 2
        ELSE 0 END,
    attempts = attempts + (sending_started_at IS NOT NULL)::int,
    last_error = CASE WHEN sending_started_at IS NULL THEN last_error
                      ELSE 'claim expired while sending' END,
    next_attempt_at = now(), claim_token = NULL, claimed_at = NULL,
    sending_started_at = NULL, updated_at = now()
WHERE sending_status = 3
  AND claimed_at < now() - make_interval(secs => %(timeout)s)
  AND (sending_started_at IS NULL OR sending_started_at < now() - make_interval(secs => %(timeout)s))
RETURNING id;

-- name: start_sending
-- Move a claimed message to in-flight, once per claim; no row means the task must not send.
UPDATE messages
SET sending_started_at = now(), updated_at = now()
WHERE id = %(id)s AND sending_status = 3 AND claim_token = %(token)s AND sending_started_at IS NULL
RETURNING id, content, recipient_phone_number, attempts;

-- name: release_claim
-- Give a claimed message that has not started sending back to pending, unsent, due again after %(delay)s seconds.
UPDATE messages
SET sending_status = 0, claim_token = NULL, claimed_at = NULL,
    next_attempt_at = now() + make_interval(secs => %(delay)s), updated_at = now()
WHERE id = %(id)s AND sending_status = 3 AND claim_token = %(token)s AND sending_started_at IS NULL
RETURNING id;

-- name: mark_sent
-- Record a delivery by the claim that made it; a late writer of an expired claim changes nothing.
UPDATE messages
SET sending_status = 1, sent_at = %(sent_at)s, webhook_message_id = %(webhook_message_id)s,
    attempts = attempts + %(attempted)s, last_error = NULL, claim_token = NULL,
    claimed_at = NULL, sending_started_at = NULL, updated_at = now()
WHERE id = %(id)s AND sending_status = 3 AND claim_token = %(token)s
RETURNING id;

-- name: record_failed_attempt
-- Count a failed attempt: back to pending after %(delay)s seconds, or failed when %(final)s.
UPDATE messages
SET sending_status = CASE WHEN %(final)s OR attempts + 1 >= %(max_attempts)s THEN 2 ELSE 0 END,
    attempts = attempts + 1, last_error = %(error)s,
    next_attempt_at = now() + make_interval(secs => %(delay)s),
    claim_token = NULL, claimed_at = NULL, sending_started_at = NULL, updated_at = now()
WHERE id = %(id)s AND sending_status = 3 AND claim_token = %(token)s
RETURNING sending_status, attempts;

-- name: list_sent
-- A page of sent messages, newest sent_at first (ties by id), by offset.
SELECT id, content, recipient_phone_number, sending_status, attempts, webhook_message_id,
       last_error, created_at, sent_at, updated_at
FROM messages
WHERE sending_status = 1
ORDER BY sent_at DESC, id DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: list_sent_after
-- A page of sent messages after the keyset cursor (sent_at, id); same cost at any depth.
SELECT id, content, recipient_phone_number, sending_status, attempts, webhook_message_id,
       last_error, created_at, sent_at, updated_at
FROM messages
WHERE sending_status = 1 AND (sent_at, id) < (%(after_time)s, %(after_id)s)
ORDER BY sent_at DESC, id DESC
LIMIT %(limit)s;

-- name: list_failed
-- A page of failed messages, most recently failed first (ties by id), by offset.
SELECT id, content, recipient_phone_number, sending_status, attempts, webhook_message_id,
       last_error, created_at, sent_at, updated_at
FROM messages
WHERE sending_status = 2
ORDER BY updated_at DESC, id DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: list_failed_after
-- A page of failed messages after the keyset cursor (updated_at, id).
SELECT id, content, recipient_phone_number, sending_status, attempts, webhook_message_id,
       last_error, created_at, sent_at, updated_at
FROM messages
WHERE sending_status = 2 AND (updated_at, id) < (%(after_time)s, %(after_id)s)
ORDER BY updated_at DESC, id DESC
LIMIT %(limit)s;

-- name: get_message
-- One message by id.
SELECT id, content, recipient_phone_number, sending_status, attempts, webhook_message_id,
       last_error, created_at, sent_at, updated_at
FROM messages
WHERE id = %(id)s;

-- name: insert_message
-- Store a new pending message.
INSERT INTO messages (recipient_phone_number, content)
VALUES (%(recipient_phone_number)s, %(content)s)
RETURNING id, content, recipient_phone_number, sending_status, attempts, webhook_message_id,
          last_error, created_at, sent_at, updated_at;

-- name: retry_failed
-- Put a failed message back to pending with its attempts reset.
UPDATE messages
SET sending_status = 0, attempts = 0, next_attempt_at = now(), updated_at = now()
WHERE id = %(id)s AND sending_status = 2
RETURNING id, content, recipient_phone_number, sending_status, attempts, webhook_message_id,
          last_error, created_at, sent_at, updated_at;

-- name: count_by_status
-- How many messages are in each status.
SELECT sending_status, count(*) AS total FROM messages GROUP BY sending_status;

-- name: count_in_status
-- How many messages are in one status (an index-only scan: it grows with the status's rows).
SELECT count(*) AS total FROM messages WHERE sending_status = %(status)s;

-- name: count_in_status_up_to
-- How many messages are in one status, counting no further than %(cap)s: cheap at any size.
SELECT count(*) AS total FROM (SELECT 1 FROM messages WHERE sending_status = %(status)s LIMIT %(cap)s) AS capped;
