#!lua flags=allow-oom
-- Read the next entries of a session stream, but only while the caller holds its
-- lease: a drainer that lost its lease (stalled, partitioned) can never take new
-- entries, so it can at most finish the batch it already has, which the Neo4j
-- progress record makes harmless. Also extends the lease.
-- Most reads go without this script (`drainer/leased_reads.py`): it serves a read of
-- own pending entries, which falls through to new ones when there are none, reads on
-- Redis Cluster, and reads whose watched transaction did not run. A first read runs
-- `claim.lua` before it.
-- KEYS[1] lease, KEYS[2] stream
-- ARGV[1] owner, ARGV[2] group, ARGV[3] consumer, ARGV[4] count, ARGV[5] start id
-- ('0' for own pending entries, then new ones when none is pending; '>' for new
-- ones), ARGV[6] lease ttl ms
-- Returns {XREADGROUP's reply, 1 if it read new entries ('>') else 0}.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('LEASELOST lease of ' .. KEYS[2] .. ' is not held by ' .. ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
local reply = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4],
                         'STREAMS', KEYS[2], ARGV[5])
local new = ARGV[5] == '>' and 1 or 0
if ARGV[5] == '0' and (not reply or #reply[1][2] == 0) then
  -- Nothing of its own pending: new entries, in the same round trip.
  reply = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4],
                     'STREAMS', KEYS[2], '>')
  new = 1
end
return {reply, new}
