#!lua flags=allow-oom
-- Answer a session's end marker (`client.end_session()`) like a flush sentinel (the
-- errors its client met since its previous flush and the Neo4j bookmarks go to the
-- waiting call, and the marker is deleted), then remove the session's keys (stream,
-- idempotency marks, lease, ready membership) unless writes followed it.
-- KEYS[1] stream, KEYS[2] the client's error list, KEYS[3] the reply list, KEYS[4]
-- seen hash, KEYS[5] lease, KEYS[6] ready set.
-- ARGV[1] group, ARGV[2] marker entry id, ARGV[3] reply ttl seconds, ARGV[4] session,
-- ARGV[5] the bookmarks (a JSON list), ARGV[6] owner.
-- Returns 1 when the keys were removed, 0 when the session goes on, and a LEASELOST
-- error when the caller no longer holds the lease.
if redis.call('GET', KEYS[5]) ~= ARGV[6] then
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
if redis.call('XLEN', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[4], KEYS[5])
  redis.call('ZREM', KEYS[6], ARGV[4])
  return 1
end
return 0
