-- A session's end marker, reached after everything before it was applied. It
-- answers like a flush sentinel (the client's errors go to the waiting reply list);
-- then, unless writes followed it, the session's keys go: stream, idempotency marks,
-- lease, ready membership.
-- KEYS[1] stream, KEYS[2] the client's error list, KEYS[3] the reply list,
-- KEYS[4] seen hash, KEYS[5] lease, KEYS[6] ready set
-- ARGV[1] group, ARGV[2] marker entry id, ARGV[3] reply ttl seconds, ARGV[4] session,
-- ARGV[5] owner. Returns 1 when the keys were removed, 0 when the session goes on,
-- -1 when the caller no longer holds the lease.
if redis.call('GET', KEYS[5]) ~= ARGV[5] then
  return -1
end
local errors = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
local reply = '{"s":' .. cjson.encode(ARGV[4]) .. ',"e":[' .. table.concat(errors, ',') .. ']}'
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
