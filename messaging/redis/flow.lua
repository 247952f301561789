-- Flow control toward the provider, shared by every worker through Redis (messaging/redis/flow.py).
-- Every state change happens inside one of these scripts: atomic, and timed by Redis's own clock.
-- A script is registered from several blocks joined: `prelude` first, then the helpers it uses.

-- name: prelude
-- Helpers every script uses: Redis's clock, the breaker's window, the rate limit's slots.
-- The breaker's window is counted in tenths: it spans 0.9 to 1.0 of BREAKER_WINDOW_SECONDS.
local WINDOW_BUCKETS = 10

local function now_seconds()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function fmt(x) return string.format('%.6f', x) end

-- Failures and successes in the window; buckets that left it are dropped.
local function window(calls_key, now, window_seconds)
  local current = math.floor(now / (window_seconds / WINDOW_BUCKETS))
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

-- name: open_and_close
-- The breaker's two transitions, for the scripts that make them.
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

-- name: admit
-- KEYS: breaker, calls, in_flight, clear, pause, tat, transitions
-- ARGV: token, lease, min_calls, ratio, window seconds, emission interval (0: no limit), tolerance,
--       longest wait in the task, recheck
-- Returns {go, wait, reason, kind (free|counted|probe), transition}
local now = now_seconds()
local token, lease = ARGV[1], tonumber(ARGV[2])
local min_calls, ratio, window_seconds = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
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
  local failed, succeeded = window(KEYS[2], now, window_seconds)
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

-- name: record
-- KEYS: breaker, calls, in_flight, clear, transitions
-- ARGV: verdict (healthy|failing|neither), kind, token, successes counted in the process,
--       min_calls, ratio, window seconds, first open time, longest open time, why
-- Returns {transition (opened|closed|''), why, open_seconds}
local now = now_seconds()
local verdict, kind, token, successes = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local min_calls, ratio, window_seconds = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local first_open, longest_open, why = tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10]

if kind == 'counted' then redis.call('ZREM', KEYS[3], token) end
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local failed, succeeded, bucket = window(KEYS[2], now, window_seconds)
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
    local reason = string.format('%d of %d deliveries in the last %gs failed; last: %s',
                                 failed, failed + succeeded, window_seconds, why)
    open(KEYS[1], KEYS[4], KEYS[5], now, first_open, reason)
    return {'opened', reason, fmt(first_open)}
  end
end
return {'', '', ''}

-- name: slot
-- KEYS: tat. ARGV: emission interval, tolerance. Takes the next slot, however far; returns its wait.
return fmt(take_slot(KEYS[1], now_seconds(), tonumber(ARGV[1]), tonumber(ARGV[2]), math.huge))

-- name: pause
-- KEYS: pause, clear. ARGV: seconds, why.
-- Returns the pause's end if this call started a pause (none was under way), else ''.
local now = now_seconds()
local ends = now + tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
redis.call('DEL', KEYS[2])
if ends <= current then return '' end
redis.call('HSET', KEYS[1], 'until', fmt(ends), 'why', ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1]) * 1000) + 1)
if current > now then return '' end  -- an extension of the pause under way: logged once, when it began
return fmt(ends)

-- name: close_by_hand
-- KEYS: breaker, calls, transitions. ARGV: why. Returns 'closed' if it was not.
local now = now_seconds()
if (redis.call('HGET', KEYS[1], 'state') or 'closed') == 'closed' then return '' end
close(KEYS[1], KEYS[2], KEYS[3], now, ARGV[1])
return 'closed'

-- name: claimable
-- KEYS: breaker, pause, tat, claimed. ARGV: limit, horizon, emission interval (0: no limit), tolerance.
-- How many a batch may claim now: none while paused or open, one for the probe, what the rate
-- limit lets through within the horizon, less what earlier batches claimed for it.
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
