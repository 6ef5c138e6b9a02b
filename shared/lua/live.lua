#!lua flags=no-writes
-- The drainers alive now (by Redis's clock, so hosts with skewed clocks agree), with
-- the fingerprints of the keys each verifies ('off': it verifies nothing) and the entry
-- versions each reads ('' from drainers too old to say), and whether any drainer has
-- ever run under this prefix.
-- KEYS[1] drainers sorted set, KEYS[2] meta hash; ARGV[1] prefix of the drainers' info
-- hashes (same hash tag). Returns {ever (0/1), id, signing, reads, id, ...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local reply = {redis.call('HEXISTS', KEYS[2], 'drainer_seen')}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  reply[#reply + 1] = id
  local info = redis.call('HMGET', ARGV[1] .. id, 'signing', 'reads')
  reply[#reply + 1] = info[1] or ''
  reply[#reply + 1] = info[2] or ''
end
return reply
