#!lua flags=allow-oom
-- On taking a session's lease: move every entry delivered to a former owner but
-- never acknowledged (the PEL) to the new owner, so it re-applies them first and
-- in order, then forget consumers that hold nothing.
-- KEYS[1] lease, KEYS[2] stream
-- ARGV[1] owner, ARGV[2] group, ARGV[3] consumer
-- Returns how many entries were claimed.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('LEASELOST lease of ' .. KEYS[2] .. ' is not held by ' .. ARGV[1])
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  return 0
end
local claimed = 0
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
return claimed
