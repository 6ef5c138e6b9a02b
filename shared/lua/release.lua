#!lua flags=allow-oom
-- Give up a session's lease. With mode 'idle' only when the stream is empty (else
-- keep it and report how many entries wait); with mode 'yield' always, keeping the
-- session ready but moving it to the back of the queue so others get a turn.
-- An empty stream leaves the ready set in the same step, so a concurrent submit
-- either lands before (and the stream is not empty) or marks it ready again.
-- An empty stream also gets an expiry (ARGV[4] ms, 0: none): a session nobody
-- writes to again leaves no keys; `submit.lua` removes the expiry with each append.
-- KEYS[1] lease, KEYS[2] stream, KEYS[3] ready set; ARGV[1] owner, ARGV[2] session,
-- ARGV[3] mode, ARGV[4] idle ttl ms. Returns the entries left; a LEASELOST error when
-- the caller no longer holds the lease.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('LEASELOST lease of ' .. KEYS[2] .. ' is not held by ' .. ARGV[1])
end
local left = redis.call('XLEN', KEYS[2])
if left == 0 then
  redis.call('ZREM', KEYS[3], ARGV[2])
  redis.call('DEL', KEYS[1])
  if tonumber(ARGV[4]) > 0 then
    redis.call('PEXPIRE', KEYS[2], ARGV[4])
  end
  return 0
end
if ARGV[3] == 'yield' then
  local now = redis.call('TIME')
  redis.call('ZADD', KEYS[3], 'XX', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000), ARGV[2])
  redis.call('DEL', KEYS[1])
end
return left
