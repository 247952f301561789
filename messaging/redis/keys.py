"""Every Redis key this service owns, in one place. All of them start with `messaging:`."""

from __future__ import annotations

from uuid import UUID

PREFIX = "messaging:"

# The switch: "1" sending on, "0" off; missing until someone touches it (then AUTO_START decides).
ENABLED = "messaging:enabled"

# The delivery cache: one key per message a worker POSTed, JSON {"messageId", "sent_at"}.
SENT_PREFIX = "messaging:sent:"

# Values shared by every process for a while (counts by status, list totals): the value, and
# beside it `:computing` (who recounts this period) and `:cost` (what the last count took).
REMEMBERED_PREFIX = "messaging:count:"

# Flow control toward the provider (messaging/redis/flow.py, flow.lua).
FLOW_CLEAR = "messaging:flow:clear"  # present: sends need not ask (closed and healthy, no pause)
FLOW_BREAKER = "messaging:flow:breaker"  # hash: state, since, why, open_seconds, reopen_at, probe, probe_until
FLOW_CALLS = "messaging:flow:calls"  # hash: "<bucket>:f" and "<bucket>:s", failures and successes per bucket
FLOW_IN_FLIGHT = "messaging:flow:in_flight"  # sorted set: counted admissions not yet settled, by lease end
FLOW_PAUSE = "messaging:flow:pause"  # hash: until, why (the provider's Retry-After); expires with the pause
FLOW_TAT = "messaging:flow:tat"  # GCRA's theoretical arrival time
FLOW_CLAIMED = "messaging:flow:claimed"  # how far the slots claimed by batches reach (their sends reserve them later)

# Counters for /metrics, added to by every worker (messaging/redis/counters.py).
METRICS_DELIVERIES = "messaging:metrics:deliveries"  # hash: send tasks by outcome
METRICS_LATENCY = "messaging:metrics:webhook_latency"  # hash: POSTs per latency bucket, and their sum
METRICS_BATCHES = "messaging:metrics:batches"  # hash: runs, claimed, recovered
METRICS_PRUNED = "messaging:metrics:pruned"  # hash: messages, attempts deleted by retention
METRICS_BREAKER = "messaging:metrics:breaker"  # hash: opened, half_open, closed, probes (written by flow.lua)
METRICS_FAILOVERS = "messaging:metrics:failovers"  # hash: postgresql, redis: primaries found replaced, per process
METRICS_RECEIPTS = "messaging:metrics:receipts"  # hash: receipts by status (and `expired` sweeps), `orphans` dropped
METRICS_CALLBACKS = "messaging:metrics:callbacks"  # hash: status callback attempts: delivered, retrying, failed
METRICS_RECEIPT_DELAY = "messaging:metrics:receipt_delay"  # hash: receipts per bucket of time since sent_at, and their sum
# When the counters began (again, after Redis lost them): the audit compares PostgreSQL with them from then on.
METRICS_SINCE = "messaging:metrics:since"


def sent(message_id: UUID | str) -> str:
    """The delivery cache's key for one message."""
    return f"{SENT_PREFIX}{message_id}"


def remembered(name: str) -> tuple[str, str, str]:
    """A remembered value's key, its `:computing` claim and its `:cost`."""
    key = f"{REMEMBERED_PREFIX}{name}"
    return key, f"{key}:computing", f"{key}:cost"
