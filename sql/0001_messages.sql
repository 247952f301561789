-- The messages table as the Go service this project replaces creates it (its GORM
-- AutoMigrate): our schema's history starts where the Go service's ends, so a fresh
-- database and one the Go service created take the same path. On the Go service's
-- database this file changes nothing; 0002 adopts the table and adds the rest.
--
-- Databases migrated by the first release applied an earlier 0001 that created the
-- whole table at once; 0002 finds nothing missing there.
CREATE TABLE IF NOT EXISTS "messages" ("id" uuid, "content" varchar(100) NOT NULL,
  "recipient_phone_number" varchar(20) NOT NULL, "sending_status" smallint NOT NULL,
  "created_at" timestamptz, "updated_at" timestamptz, PRIMARY KEY ("id"));
CREATE INDEX IF NOT EXISTS "idx_messages_sending_status_created_at" ON "messages" ("sending_status", "created_at");
