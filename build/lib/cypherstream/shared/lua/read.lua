#!lua flags=allow-oom
-- Read the next entries of a session stream, but only while the caller holds its
-- lease: a drainer that lost its lease (stalled, partitioned) can never take new
-- entries, so it can at most finish the batch it already has, which the Neo4j
-- progress record makes harmless. Also extends the lease.
-- KEYS[1] lease, KEYS[2] stream
-- ARGV[1] owner, ARGV[2] group, ARGV[3] consumer, ARGV[4] count, ARGV[5] start id
-- ('0' for own pending entries, then new ones when none is pending; '>' for new
-- ones), ARGV[6] lease ttl ms
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('LEASELOST lease of ' .. KEYS[2] .. ' is not held by ' .. ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
local reply = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4],
                         'STREAMS', KEYS[2], ARGV[5])
if ARGV[5] == '0' and (not reply or #reply[1][2] == 0) then
  -- Nothing of its own pending: new entries, in the same round trip.
  reply = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4],
                     'STREAMS', KEYS[2], '>')
end
return reply
