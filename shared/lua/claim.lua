#!lua flags=allow-oom
-- On taking a session's lease, before its first read: move every entry delivered to a
-- former owner but never acknowledged (the PEL) to the caller, so it applies them
-- first and in order, and forget consumers that hold nothing; only while the caller
-- holds the lease. The entries themselves are read right after: in a transaction that
-- runs only if the lease is still untouched (`drainer/leased_reads.py` watches it from
-- before this script, so this script leaves it alone), or by `read.lua`.
-- KEYS[1] lease, KEYS[2] stream, KEYS[3] the session's recorded bookmarks
-- ARGV[1] owner, ARGV[2] group, ARGV[3] consumer
-- Returns {entries claimed, entries now pending for the caller (-1: no stream),
-- the bookmarks `settle.lua` recorded (a JSON list) or false}.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('LEASELOST lease of ' .. KEYS[2] .. ' is not held by ' .. ARGV[1])
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  return {0, -1, false}
end
local claimed, cursor = 0, '0-0'
repeat
  local reply = redis.call('XAUTOCLAIM', KEYS[2], ARGV[2], ARGV[3], 0, cursor,
                           'COUNT', 1000, 'JUSTID')
  cursor = reply[1]
  claimed = claimed + #reply[2]
until cursor == '0-0'
local pending = 0
for _, info in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[2], ARGV[2])) do
  if info[2] == ARGV[3] then
    pending = info[4]
  elseif info[4] == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[2], ARGV[2], info[2])
  end
end
return {claimed, pending, redis.call('GET', KEYS[3])}
