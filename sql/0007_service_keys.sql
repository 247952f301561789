-- Keys the service makes for itself and every process must share: the key that signs the API's
-- page cursors when SECRET_KEY is not set. The first process to need one inserts a random value;
-- every other reads that one (messaging/postgres/queries.sql: keep_service_key, service_key).
CREATE TABLE IF NOT EXISTS service_keys (
    name text PRIMARY KEY,
    value text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
