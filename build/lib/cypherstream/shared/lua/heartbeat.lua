#!lua flags=allow-oom
-- Record that a drainer is alive until now + ARGV[2] ms (Redis's clock, so hosts
-- with skewed clocks agree), store what `drainer status` and producers read about it
-- (its signing-key fingerprints among them, so they expire with it), note that a
-- drainer has run under this prefix, and forget drainers silent for ten times that.
-- allow-oom: a drainer must start, and stay alive, on a full Redis to drain it.
-- KEYS[1] drainers sorted set, KEYS[2] this drainer's info hash, KEYS[3] meta hash
-- ARGV[1] drainer id, ARGV[2] ttl ms, ARGV[3..] info field/value pairs. Returns now (ms).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 10 * ttl)
redis.call('HSET', KEYS[2], 'heartbeat_ms', now, unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[2], 10 * ttl)
redis.call('HSETNX', KEYS[3], 'drainer_seen', now)
return now
