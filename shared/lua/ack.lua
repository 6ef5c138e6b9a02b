#!lua flags=allow-oom
-- Acknowledge applied entries and delete them, so XLEN is what remains to do; where a
-- submit waits for room in this session (its flag is set), announce the room.
-- KEYS[1] stream, KEYS[2] the session's wants-room flag
-- ARGV[1] group, ARGV[2] room channel, ARGV[3] session id, ARGV[4..] entry ids
redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 4))
local deleted = redis.call('XDEL', KEYS[1], unpack(ARGV, 4))
if redis.call('DEL', KEYS[2]) == 1 then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return deleted
