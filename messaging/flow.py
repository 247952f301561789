"""Flow control toward the provider (SPEC 8), shared by every worker on every host through Redis.

One rate limit (GCRA) and one circuit breaker. Their state changes only inside Lua scripts, each
atomic and timed by Redis's own clock, so workers on hosts with different clocks agree on every
transition, and exactly one of them makes it (and logs it).

What a send costs: nothing while the breaker is closed and healthy, nothing is paused and no
rate limit is set. The send's existing MGET reads CLEAR_KEY, which says so; successes are
then counted in the process and added to the shared window once a second. Otherwise a send
asks `admit` (one script call) and reports its answer back.

The breaker opens when at least BREAKER_MIN_CALLS deliveries in the window failed transiently
and they are at least BREAKER_FAILURE_RATIO of the window's deliveries. Until the window shows
the provider healthy (at start, after any failure, after a pause), every admission is counted
while its POST is under way, and no more are let through than could all fail without opening
the breaker: a provider down from the start costs at most BREAKER_MIN_CALLS attempts, whatever
the number of workers. Open, it lets nothing through for BREAKER_OPEN_SECONDS; then exactly one
probe goes (half-open): success closes it, failure reopens it for twice as long, up to
RETRY_MAX_SECONDS.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from uuid import UUID

import redis

from messaging.cache import wrap_errors
from messaging.delivery import Admission, Verdict
from messaging.errors import CacheUnavailable
from messaging.logs import fields
from messaging.settings import Settings

log = logging.getLogger(__name__)

CLEAR_KEY = "messaging:flow:clear"  # present: sends need not ask (closed and healthy, no pause)
BREAKER_KEY = "messaging:flow:breaker"  # hash: state, since, why, open_seconds, reopen_at, probe, probe_until
CALLS_KEY = "messaging:flow:calls"  # hash: "<bucket>:f" and "<bucket>:s", failures and successes per bucket
IN_FLIGHT_KEY = "messaging:flow:in_flight"  # sorted set: counted admissions not yet settled, by lease end
PAUSE_KEY = "messaging:flow:pause"  # hash: until, why (the provider's Retry-After); expires with the pause
TAT_KEY = "messaging:flow:tat"  # GCRA's theoretical arrival time
CLAIMED_KEY = "messaging:flow:claimed"  # how far the slots claimed by batches reach (their sends reserve them later)
TRANSITIONS_KEY = "messaging:metrics:breaker"  # hash: opened, half_open, closed, probes (counters for /metrics)

WINDOW_BUCKETS = 10  # the window is counted in tenths: it spans 0.9 to 1.0 of BREAKER_WINDOW_SECONDS
# A send whose slot under the rate limit comes within this time waits for it in the task; a later
# slot sends the claim back to pending until then. Measured at 50/s with 3 workers: docs/flow-control.md.
HOLD_IN_TASK_SECONDS = 1.0
# Held because another call is deciding (the probe, or calls in flight while the breaker counts).
RECHECK_SECONDS = 1.0
# A counted admission (or a probe) whose answer never comes (its worker died) stops counting
# once its POST cannot be under way any more.
LEASE_MARGIN_SECONDS = 5.0
SUCCESS_FLUSH_SECONDS = 1.0
# A send that reaches its POST later than one interval after its slot, and at least this late, was
# stalled: its slot is given up. Sent that late, any second holds at most rate + burst (plus this
# time's worth of slots at rates above 50/s); the floor keeps a database update from counting as one.
LATE_SLOT_SECONDS = 0.02

_PRELUDE = f"""
local WINDOW_BUCKETS = {WINDOW_BUCKETS}

local function now_seconds()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function fmt(x) return string.format('%.6f', x) end

-- Failures and successes in the window; buckets that left it are dropped.
local function window(calls_key, now, width)
  local current = math.floor(now / width)
  local failed, succeeded = 0, 0
  local entries = redis.call('HGETALL', calls_key)
  for i = 1, #entries, 2 do
    local bucket, kind = string.match(entries[i], '^(%d+):(%a)$')
    if bucket == nil or tonumber(bucket) <= current - WINDOW_BUCKETS then
      redis.call('HDEL', calls_key, entries[i])
    elseif kind == 'f' then
      failed = failed + tonumber(entries[i + 1])
    else
      succeeded = succeeded + tonumber(entries[i + 1])
    end
  end
  return failed, succeeded, current
end

local function would_open(failed, succeeded, min_calls, ratio)
  return failed >= min_calls and failed >= ratio * (failed + succeeded)
end

-- GCRA: the next slot conforms at the theoretical arrival time less the tolerance. Taken (and the
-- time moved one interval on) only when it comes within `longest`; returns the wait, or nil.
local function take_slot(tat_key, now, emission, tolerance, longest)
  local tat = math.max(tonumber(redis.call('GET', tat_key) or '0'), now)
  local wait = math.max(tat - tolerance - now, 0)
  if wait > longest then return nil, wait end
  redis.call('SET', tat_key, fmt(tat + emission), 'PX', math.ceil((tat + emission - now) * 1000) + 1000)
  return wait
end
"""

# KEYS: breaker, calls, in_flight, clear, pause, tat, transitions
# ARGV: token, lease, min_calls, ratio, bucket width, emission interval (0: no limit), tolerance,
#       longest wait in the task, recheck
# Returns {go, wait, reason, kind (free|counted|probe), transition}
_ADMIT = """
local now = now_seconds()
local token, lease = ARGV[1], tonumber(ARGV[2])
local min_calls, ratio, width = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local emission, tolerance, longest, recheck = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])

local paused = tonumber(redis.call('HGET', KEYS[5], 'until') or '0')
if paused > now then return {0, fmt(paused - now), 'paused', '', ''} end

local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local kind, transition = 'free', ''
if state == 'open' then
  local reopen = tonumber(redis.call('HGET', KEYS[1], 'reopen_at'))
  if now < reopen then return {0, fmt(reopen - now), 'breaker_open', '', ''} end
  state, transition = 'half_open', 'half_open'
  redis.call('HSET', KEYS[1], 'state', state, 'since', fmt(now))
  redis.call('HINCRBY', KEYS[7], 'half_open', 1)
end
if state == 'half_open' then
  local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
  if probe_until > now then
    return {0, fmt(math.min(recheck, probe_until - now)), 'breaker_half_open', '', transition}
  end
  kind = 'probe'
elseif redis.call('EXISTS', KEYS[4]) == 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', fmt(now))
  local failed, succeeded = window(KEYS[2], now, width)
  local in_flight = redis.call('ZCARD', KEYS[3])
  -- Let no more through than could all fail without opening the breaker.
  if would_open(failed + in_flight, succeeded, min_calls, ratio) then
    return {0, fmt(recheck), 'breaker_watching', '', ''}
  end
  if would_open(failed + in_flight + min_calls, succeeded, min_calls, ratio) then
    kind = 'counted'
  else
    redis.call('SET', KEYS[4], '1')  -- healthy: sends stop asking until the next failure
  end
end

local wait = 0
if emission > 0 then
  local taken, later = take_slot(KEYS[6], now, emission, tolerance, longest)
  if taken == nil then return {0, fmt(later), 'rate_limit', '', transition} end
  wait = taken
end
if kind == 'probe' then
  redis.call('HSET', KEYS[1], 'probe', token, 'probe_until', fmt(now + wait + lease))
  redis.call('HINCRBY', KEYS[7], 'probes', 1)
elseif kind == 'counted' then
  redis.call('ZADD', KEYS[3], fmt(now + wait + lease), token)
end
return {1, fmt(wait), '', kind, transition}
"""

_OPEN_AND_CLOSE = """
local function open(breaker, clear, transitions, now, seconds, why)
  redis.call('HSET', breaker, 'state', 'open', 'since', fmt(now), 'why', why,
             'open_seconds', fmt(seconds), 'reopen_at', fmt(now + seconds))
  redis.call('HDEL', breaker, 'probe', 'probe_until')
  redis.call('DEL', clear)
  redis.call('HINCRBY', transitions, 'opened', 1)
end

local function close(breaker, calls, transitions, now, why)
  redis.call('HSET', breaker, 'state', 'closed', 'since', fmt(now), 'why', why)
  redis.call('HDEL', breaker, 'open_seconds', 'reopen_at', 'probe', 'probe_until')
  redis.call('DEL', calls)  -- a fresh window: the outage's failures no longer count
  redis.call('HINCRBY', transitions, 'closed', 1)
end
"""

# KEYS: breaker, calls, in_flight, clear, transitions
# ARGV: verdict (healthy|failing|neither), kind, token, successes counted in the process,
#       min_calls, ratio, bucket width, window seconds, first open time, longest open time, why
# Returns {transition (opened|closed|''), why, open_seconds}
_RECORD = """
local now = now_seconds()
local verdict, kind, token, successes = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local min_calls, ratio, width, window_seconds = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local first_open, longest_open, why = tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11]

if kind == 'counted' then redis.call('ZREM', KEYS[3], token) end
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local failed, succeeded, bucket = window(KEYS[2], now, width)
if successes > 0 then redis.call('HINCRBY', KEYS[2], bucket .. ':s', successes) end

if kind == 'probe' then
  -- A probe whose lease ran out, or that the breaker was closed by hand under, decides nothing.
  if redis.call('HGET', KEYS[1], 'probe') ~= token then return {'', '', ''} end
  redis.call('HDEL', KEYS[1], 'probe', 'probe_until')
  if verdict == 'healthy' then
    close(KEYS[1], KEYS[2], KEYS[5], now, 'the probe delivery succeeded')
    return {'closed', 'the probe delivery succeeded', ''}
  elseif verdict == 'failing' then
    local seconds = math.min(longest_open, 2 * tonumber(redis.call('HGET', KEYS[1], 'open_seconds') or first_open))
    local reason = 'the probe delivery failed: ' .. why
    open(KEYS[1], KEYS[4], KEYS[5], now, seconds, reason)
    return {'opened', reason, fmt(seconds)}
  end
  return {'', '', ''}
end
-- Answers to calls let through before the breaker opened change nothing.
if state ~= 'closed' then return {'', '', ''} end
if verdict == 'healthy' then
  redis.call('HINCRBY', KEYS[2], bucket .. ':s', 1)
elseif verdict == 'failing' then
  redis.call('HINCRBY', KEYS[2], bucket .. ':f', 1)
  redis.call('DEL', KEYS[4])  -- from now on every admission is counted
  failed = failed + 1
  succeeded = succeeded + successes
  if would_open(failed, succeeded, min_calls, ratio) then
    local reason = string.format('%d of %d deliveries in the last %ss failed; last: %s',
                                 failed, failed + succeeded, window_seconds, why)
    open(KEYS[1], KEYS[4], KEYS[5], now, first_open, reason)
    return {'opened', reason, fmt(first_open)}
  end
end
return {'', '', ''}
"""

# KEYS: tat. ARGV: emission interval, tolerance. Takes the next slot, however far; returns its wait.
_SLOT = """
return fmt(take_slot(KEYS[1], now_seconds(), tonumber(ARGV[1]), tonumber(ARGV[2]), math.huge))
"""

# KEYS: pause, clear. ARGV: seconds, why.
# Returns the pause's end if this call started a pause (none was under way), else ''.
_PAUSE = """
local now = now_seconds()
local ends = now + tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
redis.call('DEL', KEYS[2])
if ends <= current then return '' end
redis.call('HSET', KEYS[1], 'until', fmt(ends), 'why', ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1]) * 1000) + 1)
if current > now then return '' end  -- an extension of the pause under way: logged once, when it began
return fmt(ends)
"""

# KEYS: breaker, calls, transitions. ARGV: why. Returns 'closed' if it was not.
_CLOSE_BY_HAND = """
local now = now_seconds()
if (redis.call('HGET', KEYS[1], 'state') or 'closed') == 'closed' then return '' end
close(KEYS[1], KEYS[2], KEYS[3], now, ARGV[1])
return 'closed'
"""

# KEYS: breaker, pause, tat, claimed. ARGV: limit, horizon, emission interval (0: no limit), tolerance.
# How many a batch may claim now: none while paused or open, one for the probe, what the rate
# limit lets through within the horizon, less what earlier batches claimed for it.
_CLAIMABLE = """
local now = now_seconds()
local limit, horizon, emission, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if tonumber(redis.call('HGET', KEYS[2], 'until') or '0') > now then return 0 end
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'open' and now < tonumber(redis.call('HGET', KEYS[1], 'reopen_at')) then return 0 end
if state ~= 'closed' then
  if tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0') > now then return 0 end
  limit = 1
end
if emission > 0 then
  local tat = math.max(tonumber(redis.call('GET', KEYS[3]) or '0'), tonumber(redis.call('GET', KEYS[4]) or '0'), now)
  -- (1e-6: the sums of epoch seconds lose a little precision; the last slot of the horizon counts)
  limit = math.min(limit, math.max(0, math.floor((now + horizon + tolerance - tat) / emission + 1e-6) + 1))
  local reach = tat + limit * emission
  redis.call('SET', KEYS[4], fmt(reach), 'PX', math.ceil((reach - now) * 1000) + 1000)
end
return limit
"""


@dataclass(frozen=True)
class Lease:
    """What an admission holds until its answer is recorded."""

    kind: str  # free (not counted), counted (in the in-flight set), probe (the half-open probe)
    token: str = ""
    slot: float = 0.0  # its slot under the rate limit, on time.monotonic()'s clock


FREE = Lease("free")


@dataclass(frozen=True)
class BreakerStatus:
    state: str  # closed, open, half_open
    since: datetime | None
    why: str | None
    reopens_at: datetime | None  # open: when the probe may go
    paused_until: datetime | None  # a provider's 429 Retry-After, for every worker
    pause_why: str | None


class RedisFlowControl:
    """`delivery.FlowControl` over Redis; one per process, shared by its threads."""

    def __init__(self, client: redis.Redis, settings: Settings, *, hold_in_task_seconds: float = HOLD_IN_TASK_SECONDS):
        self.client = client
        rate = settings.rate_limit_per_second
        self.emission = 1 / rate if rate else 0.0
        # GCRA's tolerance: up to RATE_LIMIT_BURST go at once, then one per emission interval.
        self.tolerance = (settings.rate_limit_burst - 1) * self.emission
        self.hold_in_task_seconds = hold_in_task_seconds
        self.lease_seconds = settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS
        self.window_seconds = settings.breaker_window_seconds
        self.breaker = [settings.breaker_min_calls, settings.breaker_failure_ratio, self.window_seconds / WINDOW_BUCKETS]
        self.first_open = settings.breaker_open_seconds
        self.longest_open = max(settings.retry_max_seconds, settings.breaker_open_seconds)
        self._admit = client.register_script(_PRELUDE + _ADMIT)
        self._record = client.register_script(_PRELUDE + _OPEN_AND_CLOSE + _RECORD)
        self._slot = client.register_script(_PRELUDE + _SLOT)
        self._pause = client.register_script(_PRELUDE + _PAUSE)
        self._close = client.register_script(_PRELUDE + _OPEN_AND_CLOSE + _CLOSE_BY_HAND)
        self._claimable = client.register_script(_PRELUDE + _CLAIMABLE)
        self._lock = threading.Lock()
        self._successes = 0
        self._flushed_at = time.monotonic()

    def admit(self, token: UUID, *, clear: bool) -> Admission:
        """May this claim be POSTed now? Yes also when its slot under the rate limit comes within
        HOLD_IN_TASK_SECONDS: `wait_for_slot` waits for it."""
        if clear and not self.emission:
            return Admission(go=True, lease=FREE)
        with wrap_errors():
            go, wait, reason, kind, transition = self._admit(
                keys=[BREAKER_KEY, CALLS_KEY, IN_FLIGHT_KEY, CLEAR_KEY, PAUSE_KEY, TAT_KEY, TRANSITIONS_KEY],
                args=[
                    str(token), self.lease_seconds, *self.breaker,
                    self.emission, self.tolerance, self.hold_in_task_seconds, RECHECK_SECONDS,
                ],
            )
        if transition:
            log.info("event=breaker_half_open %s", fields(why="open time over: one probe delivery goes"))
        if not int(go):
            return Admission(go=False, wait_seconds=float(wait), reason=reason)
        return Admission(go=True, lease=Lease(kind, str(token), time.monotonic() + float(wait)))

    def wait_for_slot(self, admission: Admission) -> None:
        """Sleep until the admission's slot. A wait that overran its slot (the process stalled) gives
        it up and takes the next free one: sent late, it would reach the provider together with the
        slots after it, over the limit."""
        lease = admission.lease if isinstance(admission.lease, Lease) else FREE
        slot = lease.slot
        late = max(self.emission, LATE_SLOT_SECONDS)
        while self.emission:
            if slot > time.monotonic():
                time.sleep(slot - time.monotonic())
            if time.monotonic() - slot <= late:
                return
            try:
                with wrap_errors():
                    wait = float(self._slot(keys=[TAT_KEY], args=[self.emission, self.tolerance]))
            except CacheUnavailable:
                return  # the send was admitted; Redis gone since changes nothing to that
            slot = time.monotonic() + wait

    def record(self, admission: Admission, verdict: Verdict, *, why: str = "") -> None:
        """Count an answer toward the breaker; never fails (a lost count only delays it)."""
        lease = admission.lease if isinstance(admission.lease, Lease) else FREE
        if lease.kind == "free" and verdict is not Verdict.FAILING:
            if verdict is Verdict.HEALTHY:
                self._count_success()
            return
        self._run_record(verdict.value, lease, self._take_successes(), why)

    def _count_success(self) -> None:
        """Healthy and free: counted here, added to the window once a second rather than per send."""
        with self._lock:
            self._successes += 1
            if time.monotonic() - self._flushed_at < SUCCESS_FLUSH_SECONDS:
                return
        self._run_record(Verdict.NEITHER.value, FREE, self._take_successes(), "")

    def _take_successes(self) -> int:
        with self._lock:
            taken, self._successes = self._successes, 0
            self._flushed_at = time.monotonic()
            return taken

    def _run_record(self, verdict: str, lease: Lease, successes: int, why: str) -> None:
        try:
            transition, reason, seconds = self._record(
                keys=[BREAKER_KEY, CALLS_KEY, IN_FLIGHT_KEY, CLEAR_KEY, TRANSITIONS_KEY],
                args=[
                    verdict, lease.kind, lease.token, successes, *self.breaker,
                    f"{self.window_seconds:g}", self.first_open, self.longest_open, why,
                ],
            )
        except redis.RedisError as error:
            log.debug("breaker outcome not recorded: %s", error)
            return
        if transition == "opened":
            log.warning("event=breaker_opened %s", fields(open_seconds=f"{float(seconds):g}", why=reason))
        elif transition == "closed":
            log.info("event=breaker_closed %s", fields(why=reason))

    def pause(self, seconds: float, why: str) -> None:
        """Every worker holds its sends for `seconds` (a provider's 429 Retry-After); logged when it begins."""
        try:
            ends = self._pause(keys=[PAUSE_KEY, CLEAR_KEY], args=[seconds, why])
        except redis.RedisError as error:
            log.debug("pause not recorded: %s", error)
            return
        if ends:
            log.warning("event=provider_pause %s", fields(seconds=f"{seconds:g}", until=_iso(ends), why=why))

    def claimable(self, limit: int, horizon_seconds: float) -> int:
        """How many a batch may claim: with a rate limit, the slots up to the next batch plus the wait
        a task may take, so that sends waiting for their slots carry the limit through a late batch."""
        horizon = horizon_seconds + self.hold_in_task_seconds
        with wrap_errors():
            return int(
                self._claimable(
                    keys=[BREAKER_KEY, PAUSE_KEY, TAT_KEY, CLAIMED_KEY], args=[limit, horizon, self.emission, self.tolerance]
                )
            )

    def close_by_hand(self, why: str = "closed by hand (POST /messaging/start)") -> bool:
        """Close an open or half-open breaker; True when it was not closed."""
        with wrap_errors():
            closed = self._close(keys=[BREAKER_KEY, CALLS_KEY, TRANSITIONS_KEY], args=[why])
        if closed:
            log.info("event=breaker_closed %s", fields(why=why))
        return bool(closed)

    def status(self) -> BreakerStatus:
        return breaker_status(self.client)


def breaker_status(client: redis.Redis) -> BreakerStatus:
    """The breaker and the pause as every worker sees them."""
    with wrap_errors():
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(BREAKER_KEY)
        pipe.hgetall(PAUSE_KEY)
        breaker, pause = pipe.execute()
    return read_breaker_status(breaker, pause)


def read_breaker_status(breaker: dict[str, str], pause: dict[str, str]) -> BreakerStatus:
    """The status from the hashes at BREAKER_KEY and PAUSE_KEY, read by the caller (in its own pipeline)."""
    state = breaker.get("state", "closed")
    return BreakerStatus(
        state=state,
        since=_time(breaker.get("since")),
        why=breaker.get("why"),
        reopens_at=_time(breaker.get("reopen_at")) if state == "open" else None,
        paused_until=_time(pause.get("until")),
        pause_why=pause.get("why"),
    )


def _time(epoch: str | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(float(epoch), timezone.utc)


def _iso(epoch: str) -> str:
    moment = _time(epoch)
    return moment.isoformat() if moment else ""
