-- Record that a drainer is alive until now + ARGV[2] ms (Redis's clock, so hosts
-- with skewed clocks agree), and forget drainers silent for ten times that.
-- KEYS[1] drainers sorted set; ARGV[1] drainer id, ARGV[2] ttl ms. Returns now (ms).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 10 * tonumber(ARGV[2]))
return now
