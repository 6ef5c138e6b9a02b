#!lua flags=allow-oom
-- The sweep's check of one session: put a stream with entries back in its ready set
-- when it is missing there. Atomic, so a drain releasing the session meanwhile
-- cannot be undone by a stale look.
-- KEYS[1] session stream, KEYS[2] its partition's ready set; ARGV[1] session id.
-- Returns 1 when the session was missing and is ready again, else 0.
if redis.call('XLEN', KEYS[1]) > 0 and not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
  return 1
end
return 0
