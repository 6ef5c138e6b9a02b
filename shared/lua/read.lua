#!lua flags=allow-oom
-- Read the next entries of a session stream, but only while the caller holds its
-- lease: a drainer that lost its lease (stalled, partitioned) can never take new
-- entries, so it can at most finish the batch it already has, which the Neo4j
-- progress record makes harmless. Also extends the lease.
-- With ARGV[7] '1' (on taking the lease, and when entries seem stuck), first move
-- every entry delivered to a former owner but never acknowledged (the PEL) to the
-- caller, so it applies them first and in order, and forget consumers that hold
-- nothing; ARGV[5] is then '0'. Such a read also returns the bookmarks `settle.lua`
-- recorded for the session, for a flush this drain answers without applying a write.
-- KEYS[1] lease, KEYS[2] stream, KEYS[3] the session's recorded bookmarks
-- ARGV[1] owner, ARGV[2] group, ARGV[3] consumer, ARGV[4] count, ARGV[5] start id
-- ('0' for own pending entries, then new ones when none is pending; '>' for new
-- ones), ARGV[6] lease ttl ms, ARGV[7] '1' to claim first, else '0'
-- Returns {entries claimed, XREADGROUP's reply, 1 if it read new entries ('>') else 0,
-- the recorded bookmarks (a JSON list) or false}.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('LEASELOST lease of ' .. KEYS[2] .. ' is not held by ' .. ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
local claimed, recorded = 0, false
if ARGV[7] == '1' then
  if redis.call('EXISTS', KEYS[2]) == 0 then
    return {0, false, 0, false}
  end
  recorded = redis.call('GET', KEYS[3])
  local cursor = '0-0'
  repeat
    local reply = redis.call('XAUTOCLAIM', KEYS[2], ARGV[2], ARGV[3], 0, cursor,
                             'COUNT', 1000, 'JUSTID')
    cursor = reply[1]
    claimed = claimed + #reply[2]
  until cursor == '0-0'
  for _, info in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[2], ARGV[2])) do
    if info[2] ~= ARGV[3] and info[4] == 0 then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[2], ARGV[2], info[2])
    end
  end
end
local reply = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4],
                         'STREAMS', KEYS[2], ARGV[5])
local new = ARGV[5] == '>' and 1 or 0
if ARGV[5] == '0' and (not reply or #reply[1][2] == 0) then
  -- Nothing of its own pending: new entries, in the same round trip.
  reply = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4],
                     'STREAMS', KEYS[2], '>')
  new = 1
end
return {claimed, reply, new, recorded}
