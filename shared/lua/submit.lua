#!lua
-- Flags declared and allow-oom not among them: on a full Redis the whole script is
-- refused before it writes anything, and the producer waits for room.
-- Append one entry to a session stream unless the stream is full, and mark the
-- session ready for drainers, atomically.
-- KEYS[1] session stream, KEYS[2] partition ready set, KEYS[3] the session's
-- per-client high-water marks (idempotency), KEYS[4] the session's wants-room flag
-- ARGV[1] max pending entries (0: no limit), ARGV[2] session id, ARGV[3] group,
-- ARGV[4] client id, ARGV[5] the client's sequence number (0: no idempotency check),
-- ARGV[6] seconds the high-water mark is kept, ARGV[7] the channel on which a session
-- that became ready is announced to drainers, ARGV[8..] the entry's field/value pairs.
-- Returns the new entry id; 'DUP' when this client's sequence number was already
-- appended (a retry after the reply was lost); false when the stream is full, after
-- raising the wants-room flag so the drainer's next acknowledgement announces room.
local stream = KEYS[1]
local limit = tonumber(ARGV[1])
local seq = tonumber(ARGV[5])
if seq > 0 then
  local last = tonumber(redis.call('HGET', KEYS[3], ARGV[4]) or '0')
  if seq <= last then
    -- Rewrite the mark so this reply follows a write: a WAIT after it then confirms
    -- the replicas hold everything up to here, the earlier append included.
    redis.call('HSET', KEYS[3], ARGV[4], last)
    return 'DUP'
  end
end
if redis.call('EXISTS', stream) == 0 then
  redis.call('XGROUP', 'CREATE', stream, ARGV[3], '0', 'MKSTREAM')
elseif limit > 0 and redis.call('XLEN', stream) >= limit then
  redis.call('SET', KEYS[4], '1', 'EX', 60)
  return false
end
local id = redis.call('XADD', stream, '*', unpack(ARGV, 8))
redis.call('PERSIST', stream)  -- an idle session's expiry (settle.lua) ends here
if redis.call('ZADD', KEYS[2], 'NX', tonumber(string.match(id, '^(%d+)')), ARGV[2]) == 1
    and redis.acl_check_cmd('PUBLISH', ARGV[7], ARGV[2]) then
  -- A hint, where the user's ACL allows the channel: drainers poll the ready sets too.
  redis.call('PUBLISH', ARGV[7], ARGV[2])
end
if seq > 0 then
  redis.call('HSET', KEYS[3], ARGV[4], seq)
  redis.call('EXPIRE', KEYS[3], ARGV[6])
end
return id
