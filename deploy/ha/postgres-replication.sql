-- Run by deploy/ha.yml's postgres-replicator service, as the superuser, on the primary:
-- the role a standby streams as (REPLICATION_PASSWORD). It may log in and replicate, nothing
-- else; deploy/ha/pg_hba.conf lets it in for replication only. Idempotent.
\getenv replication_password REPLICATION_PASSWORD

SELECT 'CREATE ROLE replicator'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'replicator') \gexec

SELECT format('ALTER ROLE replicator LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %L',
              :'replication_password') \gexec
