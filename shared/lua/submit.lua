-- Append one entry to a session stream unless the stream is full, and mark the
-- session ready for drainers, atomically.
-- KEYS[1] session stream, KEYS[2] partition ready set
-- ARGV[1] max pending entries (0: no limit), ARGV[2] session id, ARGV[3] group,
-- ARGV[4..] the entry's field/value pairs.
-- Returns the new entry id, or false when the stream already holds ARGV[1] entries.
local stream = KEYS[1]
local limit = tonumber(ARGV[1])
if redis.call('EXISTS', stream) == 0 then
  redis.call('XGROUP', 'CREATE', stream, ARGV[3], '0', 'MKSTREAM')
elseif limit > 0 and redis.call('XLEN', stream) >= limit then
  return false
end
local id = redis.call('XADD', stream, '*', unpack(ARGV, 4))
redis.call('ZADD', KEYS[2], 'NX', tonumber(string.match(id, '^(%d+)')), ARGV[2])
return id
