-- migrate: no-transaction
-- Sent messages by delivery status, newest first: GET /messaging/sent?delivery_status=... (null reads
-- `unknown`, as in the queries that use it), and, read backwards, the oldest sent messages still without a final receipt for the
-- sweep that expires them. CONCURRENTLY, as 0006: reads and writes go on while it builds, and a
-- half-built index is dropped and built again by the next migrate.
DROP INDEX CONCURRENTLY IF EXISTS messages_sent_delivery_idx;
CREATE INDEX CONCURRENTLY messages_sent_delivery_idx
    ON messages ((coalesce(delivery_status, 'unknown')), sent_at DESC, id DESC)
    WHERE sending_status = 1;
-- Every row has a null delivery_status until now: the scan finds nothing, under a lock that lets writes through.
ALTER TABLE messages VALIDATE CONSTRAINT messages_delivery_status_known;
