-- Record that a drainer is alive until now + ARGV[2] ms (Redis's clock, so hosts
-- with skewed clocks agree), store what `drainer status` shows about it, and forget
-- drainers silent for ten times that.
-- KEYS[1] drainers sorted set, KEYS[2] this drainer's info hash
-- ARGV[1] drainer id, ARGV[2] ttl ms, ARGV[3..] info field/value pairs. Returns now (ms).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 10 * ttl)
redis.call('HSET', KEYS[2], 'heartbeat_ms', now, unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[2], 10 * ttl)
return now
