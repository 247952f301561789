#!/bin/sh
# One Redis Sentinel (deploy/ha.yml). Sentinel rewrites its configuration file as it learns
# (replicas, other Sentinels, a new master after a failover), so the file is written here, once,
# into a writable place, and kept across restarts of the container: a Sentinel restarted after a
# failover still knows the new master. Hostnames, not container addresses, are monitored and
# announced, so a recreated container keeps its name.
set -eu
conf=/tmp/sentinel.conf
if [ ! -s "$conf" ]; then
  umask 077
  cat > "$conf" <<CONF
port 26379
dir /tmp
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $SENTINEL_HOSTNAME
requirepass "$REDIS_PASSWORD"
sentinel sentinel-pass "$REDIS_PASSWORD"
sentinel monitor $REDIS_SENTINEL_MASTER redis 6379 2
sentinel auth-pass $REDIS_SENTINEL_MASTER "$REDIS_PASSWORD"
sentinel down-after-milliseconds $REDIS_SENTINEL_MASTER 5000
sentinel failover-timeout $REDIS_SENTINEL_MASTER 30000
CONF
fi
exec redis-server "$conf" --sentinel
