#!lua flags=allow-oom
-- Acknowledge a flush sentinel: hand the errors the sentinel's client met since
-- its previous flush, and the Neo4j bookmarks of the writes before the sentinel, to
-- the waiting flush, then remove the sentinel.
-- An end marker (`client.end_session()`) is answered the same way and, given
-- KEYS[4..6], then removes the session's keys (stream, idempotency marks, lease,
-- ready membership) unless writes followed it.
-- KEYS[1] stream, KEYS[2] the client's error list, KEYS[3] the flush's reply list;
-- for an end marker also KEYS[4] seen hash, KEYS[5] lease, KEYS[6] ready set.
-- ARGV[1] group, ARGV[2] sentinel entry id, ARGV[3] reply ttl seconds, ARGV[4] session,
-- ARGV[5] the bookmarks (a JSON list); for an end marker also ARGV[6] owner.
-- Returns the errors handed over; for an end marker 1 when the keys were removed,
-- 0 when the session goes on, and a LEASELOST error when the caller no longer holds
-- the lease.
local ending = #KEYS == 6
if ending and redis.call('GET', KEYS[5]) ~= ARGV[6] then
  return redis.error_reply('LEASELOST lease of ' .. KEYS[1] .. ' is not held by ' .. ARGV[6])
end
local errors = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
local reply = '{"s":' .. cjson.encode(ARGV[4]) .. ',"b":' .. ARGV[5] .. ',"e":['
  .. table.concat(errors, ',') .. ']}'
redis.call('RPUSH', KEYS[3], reply)
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if not ending then
  return #errors
end
if redis.call('XLEN', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[4], KEYS[5])
  redis.call('ZREM', KEYS[6], ARGV[4])
  return 1
end
return 0
