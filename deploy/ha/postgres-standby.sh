#!/bin/sh
# A PostgreSQL node that streams from PRIMARY_HOST (deploy/ha.yml). With an empty data directory it
# is first cloned with `pg_basebackup -R`, which writes standby.signal and primary_conninfo; then the
# image's own entrypoint starts the server (it owns the files and drops root). A node already holding
# data starts as what it is: a standby, or a primary once promoted.
#   postgres-standby.sh          clone if empty, then run
#   postgres-standby.sh clone    clone if empty, then exit (rebuilding an old primary: docs/operations.md)
set -eu
: "${PGDATA:=/var/lib/postgresql/data}" "${PRIMARY_HOST:=postgres}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  find "$PGDATA" -mindepth 1 -delete 2>/dev/null || true
  echo "cloning $PRIMARY_HOST into $PGDATA"
  PGPASSWORD=$REPLICATION_PASSWORD pg_basebackup -h "$PRIMARY_HOST" -U replicator -D "$PGDATA" \
    -R -X stream -c fast --no-password
fi
[ "${1:-}" = clone ] && exit 0
unset REPLICATION_PASSWORD
exec docker-entrypoint.sh postgres -c hba_file=/deploy/ha/pg_hba.conf
