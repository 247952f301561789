-- Values shared by every process for a while (messaging/redis/shared_counts.py).

-- name: claim_period
-- The value and whether this caller claims the period to compute it afresh, in one step. The
-- claim lasts the period: half the value's max age, or ARGV[2] (the cost factor) times the last
-- computation's cost if that is longer.
-- KEYS: value, computing, cost. ARGV: shortest period (ms), cost factor. Returns {value, claimed}.
local cost = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
local period = math.max(tonumber(ARGV[1]), math.floor(cost * tonumber(ARGV[2])))
local claimed = redis.call('SET', KEYS[2], '1', 'NX', 'PX', period)
return {redis.call('GET', KEYS[1]), claimed and 1 or 0}
