-- Demo data: 40 pending messages, oldest first; one that failed after two attempts (Swagger UI's
-- example for the attempts list and for retry), whose status callback failed too (the example for
-- callbacks/retry: with status callbacks off, one retried waits as pending); one sent and delivered,
-- with its delivery receipt and its two events (the example for /events: make run has status
-- callbacks off, so no event is written there otherwise); one scheduled a month ahead (the example for cancel: still pending once the others
-- are sent). api/messages.py names them. Loaded by `python -m messaging load-demo`; fixed ids make
-- loading it again a no-op. One statement, whose answer is how many messages it added.
-- The times of the last three are the load's: pruning (ATTEMPT_RETENTION_DAYS, MESSAGE_RETENTION_DAYS)
-- counts from then, and the audit's sent counts never see the sent one (it was sent before the
-- counters began, at the first batch after the load).
WITH pending AS (
INSERT INTO messages (id, recipient_phone_number, content, sending_status, created_at, updated_at) VALUES
    ('d6b8374e-fa68-5bb8-9315-679115aff80f', '+49152601815', 'Password changed. If this was not you, call us right away.', 0, '2026-11-01 09:00:00+00', '2026-11-01 09:00:00+00'),
    ('c9100254-1ea5-5a72-9cc4-294cc5b94279', '+336123016613', 'Hi! Your order #677814 has shipped and arrives tomorrow.', 0, '2026-11-01 09:07:00+00', '2026-11-01 09:07:00+00'),
    ('f6f795b7-29dd-5685-a694-c24579cc22e2', '+44770913909', 'Password changed. If this was not you, call us right away.', 0, '2026-11-01 09:14:00+00', '2026-11-01 09:14:00+00'),
    ('67f50610-90e3-54db-92b9-b2042ee93b78', '+905323082462', 'Your ride is arriving in 3 minutes: grey Toyota, plate 34 ABC 223514.', 0, '2026-11-01 09:21:00+00', '2026-11-01 09:21:00+00'),
    ('5a269424-fcba-5347-a8bb-a6ced97c028c', '+336124821993', 'Flash sale: 20% off everything until midnight. Reply STOP to opt out.', 0, '2026-11-01 09:28:00+00', '2026-11-01 09:28:00+00'),
    ('88ae6bc8-f488-5ef4-9108-88b9917cd77f', '+336121909378', 'Your package is out for delivery today between 14:00 and 18:00.', 0, '2026-11-01 09:35:00+00', '2026-11-01 09:35:00+00'),
    ('fb553837-b469-5f24-b909-ce70ec90bdb6', '+49157975432', 'Your table for two is confirmed for 20:00 tonight.', 0, '2026-11-01 09:42:00+00', '2026-11-01 09:42:00+00'),
    ('ef244cc7-5ec6-5889-9eac-c5fe8553d3fa', '+336124875749', 'Hi! Your order #223800 has shipped and arrives tomorrow.', 0, '2026-11-01 09:49:00+00', '2026-11-01 09:49:00+00'),
    ('c7ebcdd4-7411-552b-ba10-a94538db62dd', '+336126252760', 'Hi! Your order #901710 has shipped and arrives tomorrow.', 0, '2026-11-01 09:56:00+00', '2026-11-01 09:56:00+00'),
    ('23e123e6-9836-598a-bd7d-f3912ccc3a0f', '+336129555979', 'Welcome aboard! Reply HELP for help or STOP to unsubscribe.', 0, '2026-11-01 10:03:00+00', '2026-11-01 10:03:00+00'),
    ('a9801e54-dc3d-5193-812f-5b992bd8de6b', '+31611471049', 'Welcome aboard! Reply HELP for help or STOP to unsubscribe.', 0, '2026-11-01 10:10:00+00', '2026-11-01 10:10:00+00'),
    ('195de2bd-3b71-5a45-a995-1d21b4702fe3', '+14156507529', 'Hi! Your order #617674 has shipped and arrives tomorrow.', 0, '2026-11-01 10:17:00+00', '2026-11-01 10:17:00+00'),
    ('481384f0-d75e-5393-bfef-825662a1bd48', '+905323423667', 'Hi! Your order #274447 has shipped and arrives tomorrow.', 0, '2026-11-01 10:24:00+00', '2026-11-01 10:24:00+00'),
    ('87a2cb04-919a-579b-a9a7-cdd2ed9d98e7', '+44776842684', 'Your package is out for delivery today between 14:00 and 18:00.', 0, '2026-11-01 10:31:00+00', '2026-11-01 10:31:00+00'),
    ('bf938bea-44f6-53d7-813a-b2182a1d2f10', '+14156321223', 'Your table for two is confirmed for 20:00 tonight.', 0, '2026-11-01 10:38:00+00', '2026-11-01 10:38:00+00'),
    ('bc7de124-9446-50ff-8500-6d815492f490', '+44779244026', 'Your ride is arriving in 3 minutes: grey Toyota, plate 34 ABC 487190.', 0, '2026-11-01 10:45:00+00', '2026-11-01 10:45:00+00'),
    ('32d2a009-a740-56cb-ad74-c3911e43a9d4', '+336129528907', 'Your ride is arriving in 3 minutes: grey Toyota, plate 34 ABC 511439.', 0, '2026-11-01 10:52:00+00', '2026-11-01 10:52:00+00'),
    ('6891abc0-0d79-57bf-9590-01fc9757ca1b', '+44776617603', 'Hi! Your order #318904 has shipped and arrives tomorrow.', 0, '2026-11-01 10:59:00+00', '2026-11-01 10:59:00+00'),
    ('b52a5de6-2ea6-5c36-9690-5a816c1e8798', '+44772159010', 'Password changed. If this was not you, call us right away.', 0, '2026-11-01 11:06:00+00', '2026-11-01 11:06:00+00'),
    ('c9758670-d354-5a32-8f26-be3ced532596', '+336121590139', 'Your package is out for delivery today between 14:00 and 18:00.', 0, '2026-11-01 11:13:00+00', '2026-11-01 11:13:00+00'),
    ('309781d4-6c31-529c-9613-03db352a1fc9', '+14154595711', 'Welcome aboard! Reply HELP for help or STOP to unsubscribe.', 0, '2026-11-01 11:20:00+00', '2026-11-01 11:20:00+00'),
    ('d19483f4-1dae-5a92-8e54-12e703060ab6', '+44777412154', 'Welcome aboard! Reply HELP for help or STOP to unsubscribe.', 0, '2026-11-01 11:27:00+00', '2026-11-01 11:27:00+00'),
    ('6a65d818-c41e-5220-812b-28523212b0b6', '+14152803852', 'Your ride is arriving in 3 minutes: grey Toyota, plate 34 ABC 128356.', 0, '2026-11-01 11:34:00+00', '2026-11-01 11:34:00+00'),
    ('70098ab0-9dc8-599b-8324-31844043f860', '+31618414852', 'Flash sale: 20% off everything until midnight. Reply STOP to opt out.', 0, '2026-11-01 11:41:00+00', '2026-11-01 11:41:00+00'),
    ('f915eeb2-e546-57b0-b48d-6f6883de6b91', '+905418885393', 'Your table for two is confirmed for 20:00 tonight.', 0, '2026-11-01 11:48:00+00', '2026-11-01 11:48:00+00'),
    ('1631180c-4845-5e76-a1ee-e15d30d28d23', '+44773387500', 'Payment of 49.90 EUR received. Thank you!', 0, '2026-11-01 11:55:00+00', '2026-11-01 11:55:00+00'),
    ('17d997b0-b4e7-5c30-820b-81d30a70a848', '+49153957551', 'Your table for two is confirmed for 20:00 tonight.', 0, '2026-11-01 12:02:00+00', '2026-11-01 12:02:00+00'),
    ('8b5d80a9-0c46-587c-b67b-fefe0c5d99f4', '+905417353799', 'Your verification code is 602764. It expires in 10 minutes.', 0, '2026-11-01 12:09:00+00', '2026-11-01 12:09:00+00'),
    ('d5b7aeeb-2946-5173-89f7-2d68563a6671', '+14155116372', 'Your package is out for delivery today between 14:00 and 18:00.', 0, '2026-11-01 12:16:00+00', '2026-11-01 12:16:00+00'),
    ('5a9d6c11-d007-53db-b322-108a65c6db7d', '+14155167612', 'Reminder: your appointment is on Monday at 10:30.', 0, '2026-11-01 12:23:00+00', '2026-11-01 12:23:00+00'),
    ('3443611f-325d-5468-9e6e-215ec0a7c24f', '+905322972997', 'Flash sale: 20% off everything until midnight. Reply STOP to opt out.', 0, '2026-11-01 12:30:00+00', '2026-11-01 12:30:00+00'),
    ('a94d8aaf-182a-587f-a11b-b17c0c1bc6d9', '+336128200182', 'Your package is out for delivery today between 14:00 and 18:00.', 0, '2026-11-01 12:37:00+00', '2026-11-01 12:37:00+00'),
    ('2cf56fbe-1538-5999-abe5-d3c3b72af05c', '+31613043483', 'Password changed. If this was not you, call us right away.', 0, '2026-11-01 12:44:00+00', '2026-11-01 12:44:00+00'),
    ('d198ad54-10b9-5c2a-a96d-9905b199efd5', '+49158620579', 'Your ride is arriving in 3 minutes: grey Toyota, plate 34 ABC 541060.', 0, '2026-11-01 12:51:00+00', '2026-11-01 12:51:00+00'),
    ('1c7dc9b0-64ce-54f6-9a2d-639a68303cd2', '+31618282880', 'Welcome aboard! Reply HELP for help or STOP to unsubscribe.', 0, '2026-11-01 12:58:00+00', '2026-11-01 12:58:00+00'),
    ('a8ec9e09-17db-5938-bc5d-0a408cf85e01', '+905419022279', 'Hi! Your order #683506 has shipped and arrives tomorrow.', 0, '2026-11-01 13:05:00+00', '2026-11-01 13:05:00+00'),
    ('92678e6a-9c9a-5e5f-ab8e-8766a66950b4', '+905325888718', 'Your verification code is 360565. It expires in 10 minutes.', 0, '2026-11-01 13:12:00+00', '2026-11-01 13:12:00+00'),
    ('405af374-1ed4-5349-8cbc-7ca607103d13', '+905414018780', 'Hi! Your order #564779 has shipped and arrives tomorrow.', 0, '2026-11-01 13:19:00+00', '2026-11-01 13:19:00+00'),
    ('e8c6b7b0-8865-535a-a5eb-67932cd02676', '+49159898347', 'Your ride is arriving in 3 minutes: grey Toyota, plate 34 ABC 659190.', 0, '2026-11-01 13:26:00+00', '2026-11-01 13:26:00+00'),
    ('c90a49a3-4a9b-512c-880c-0ec0a51aa38b', '+31617838483', 'Welcome aboard! Reply HELP for help or STOP to unsubscribe.', 0, '2026-11-01 13:33:00+00', '2026-11-01 13:33:00+00')
ON CONFLICT (id) DO NOTHING
RETURNING id
), failed AS (
INSERT INTO messages (id, recipient_phone_number, content, sending_status, attempts, attempt_trigger, last_error,
                      created_at, updated_at) VALUES
    ('7103b737-2731-5f5c-9ae2-a8aa384a22f7', '+905321234567', 'Your verification code is 482913.', 2, 2, 'retry',
     'HTTP 400 Bad Request', now() - interval '2 minutes', now())
ON CONFLICT (id) DO NOTHING
RETURNING id
), failed_attempts AS (
INSERT INTO message_attempts (message_id, attempt, "trigger", started_at, duration_ms, http_status, error_class,
                              retry_after_seconds, answer)
SELECT failed.id, attempt, "trigger", now() - ago, duration_ms, http_status, 'http_status', retry_after_seconds, answer
FROM failed CROSS JOIN (VALUES
    (1, 'scheduled', interval '90 seconds', 12.4::real, 503::smallint, 30::real,
     '{"message": "Service Unavailable"}'),
    (2, 'retry', interval '1 minute', 9.7::real, 400::smallint, NULL::real,
     '{"message": "recipient_phone_number is not a mobile number"}')
) AS attempts (attempt, "trigger", ago, duration_ms, http_status, retry_after_seconds, answer)
), failed_event AS (
INSERT INTO message_events (message_id, type, occurred_at, callback_state, attempts, last_http_status, last_error)
SELECT id, 'message.failed', now() - interval '59 seconds', 'failed', 10, 503, 'HTTP 503 Service Unavailable'
FROM failed
), sent AS (
INSERT INTO messages (id, recipient_phone_number, content, sending_status, attempts, webhook_message_id, encoding,
                      segments, delivery_status, delivered_at, created_at, sent_at, updated_at) VALUES
    ('6b530df7-89de-5b9e-b7ef-93fc6d92a8e8', '+31612345678', 'Your table for two is confirmed for 20:00 tonight.', 1, 1,
     '1a5d5086-7cf9-5927-ae46-76b3872f4075', 'GSM-7', 1, 'delivered', now() - interval '177 seconds',
     now() - interval '3 minutes', now() - interval '179 seconds', now() - interval '177 seconds')
ON CONFLICT (id) DO NOTHING
RETURNING id, webhook_message_id
), sent_attempt AS (
INSERT INTO message_attempts (message_id, attempt, "trigger", started_at, duration_ms, http_status, answer)
SELECT id, 1, 'scheduled', now() - interval '179.2 seconds', 11.8, 202,
       '{"message": "Accepted", "messageId": "' || webhook_message_id || '"}'
FROM sent
), sent_inbox AS (
-- What mark_sent writes while receipts are on: the provider's messageId against its message.
INSERT INTO receipt_inbox (webhook_message_id, message_id)
SELECT webhook_message_id, id FROM sent
ON CONFLICT (webhook_message_id) DO NOTHING
), sent_receipt AS (
INSERT INTO delivery_receipts (webhook_message_id, status, reported_at, received_at, outcome)
SELECT webhook_message_id, 'delivered', now() - interval '177 seconds', now() - interval '176.7 seconds', 'applied'
FROM sent
), sent_events AS (
-- Their callbacks delivered, so that a dispatcher (STATUS_CALLBACKS on) never POSTs them anywhere.
INSERT INTO message_events (message_id, type, occurred_at, callback_state, attempts, last_http_status, delivered_at)
SELECT id, type, now() - ago, 'delivered', 1, 200, now() - ago + interval '0.2 seconds'
FROM sent CROSS JOIN (VALUES
    ('message.sent', interval '179 seconds'),
    ('message.delivered', interval '176.7 seconds')
) AS events (type, ago)
ORDER BY ago DESC
), scheduled AS (
INSERT INTO messages (id, recipient_phone_number, content, send_at, next_attempt_at, encoding, segments, created_at,
                      updated_at) VALUES
    ('8ac93029-85e7-59a9-8851-106df84970b1', '+14155550123', 'Your subscription renews in three days.',
     now() + interval '30 days', now() + interval '30 days', 'GSM-7', 1, now(), now())
ON CONFLICT (id) DO NOTHING
RETURNING id
)
SELECT (SELECT count(*) FROM pending) + (SELECT count(*) FROM failed) + (SELECT count(*) FROM sent)
       + (SELECT count(*) FROM scheduled) AS added;
