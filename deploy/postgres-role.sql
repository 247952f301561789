-- Run by compose's postgres-role service, as the superuser, before every migrate:
-- the app's role (APP_ROLE, password APP_ROLE_PASSWORD) logs in, is no superuser and owns
-- the database, its public schema and every table in it, so migrations run as that role.
-- Idempotent; on a volume made before, it takes over the superuser's tables.
\getenv app_role APP_ROLE
\getenv app_password APP_ROLE_PASSWORD

SELECT format('CREATE ROLE %I', :'app_role')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_role') \gexec

SELECT format('ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD %L',
              :'app_role', :'app_password') \gexec

SELECT format('ALTER DATABASE %I OWNER TO %I', current_database(), :'app_role') \gexec
SELECT format('ALTER SCHEMA public OWNER TO %I', :'app_role') \gexec

-- Tables and views (an identity column's sequence follows its table).
SELECT format('ALTER TABLE %I.%I OWNER TO %I', n.nspname, c.relname, :'app_role')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
  AND pg_get_userbyid(c.relowner) <> :'app_role' \gexec
