#!lua flags=allow-oom
-- What a drain does in Redis after applying entries, in one round trip:
-- 1. acknowledge and delete the applied entries (ARGV[11..]), so XLEN is what remains.
--    They are a prefix of the stream (a drain applies from the stream's head, in order,
--    and a flush sentinel after them), so the stream is trimmed up to the last one:
--    XTRIM MINID costs Redis a twentieth of what XDEL of each id does;
-- 2. answer a flush sentinel when one is given (ARGV[7]): the errors its client met
--    since its previous flush, and the Neo4j bookmarks of the writes before it, go
--    to the waiting flush, and the sentinel is deleted;
-- 3. record the Neo4j bookmarks of the transactions that applied them (ARGV[10]),
--    so a later drain that applies none of the session's writes answers a flush with
--    them instead of a transaction of its own. The owner's replace what was kept:
--    its transactions lock the session's progress record after every earlier one.
--    A caller that lost the lease (it stalled) adds to them: its commit may be later
--    than any of the new owner's;
-- 4. where something was deleted and a submit waits for room in this session (its
--    flag is set), announce the room;
-- 5. give up the lease when asked (ARGV[5]): 'idle' only when the stream is empty,
--    leaving the ready set in the same step (so a concurrent submit either lands
--    before, and the stream is not empty, or marks it ready again) and setting the
--    empty stream's expiry (ARGV[6] ms, 0: none; `submit.lua` removes it with each
--    append); 'yield' always, keeping the session ready but at the back of the queue;
--    'end' (the sentinel answered was the end marker of `client.end_session()`) like
--    'idle', but an empty stream goes at once, with the rest of the session's keys.
-- KEYS[1] stream, KEYS[2] the session's wants-room flag, KEYS[3] lease, KEYS[4] ready
-- set, KEYS[5] the sentinel's client's error list and KEYS[6] the flush's reply list
-- (both the stream again when no sentinel is answered), KEYS[7] the session's
-- idempotency marks (for 'end'; else the stream again), KEYS[8] the session's
-- recorded bookmarks
-- ARGV[1] group, ARGV[2] room channel, ARGV[3] session id, ARGV[4] owner, ARGV[5] ''
-- (keep the lease), 'idle', 'yield' or 'end', ARGV[6] idle ttl ms, ARGV[7] the sentinel's
-- entry id ('' for none), ARGV[8] reply ttl seconds, ARGV[9] the sentinel's bookmarks (a
-- JSON list), ARGV[10] the bookmarks to record (a JSON list; '' for none), ARGV[11..]
-- entry ids
-- Returns the entries left; a LEASELOST error, after steps 1-4, when asked to give up
-- a lease the caller no longer holds.
local deleted, last = 0, false
if #ARGV >= 11 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 11))
  last = ARGV[#ARGV]
end
if ARGV[7] ~= '' then
  local errors = redis.call('LRANGE', KEYS[5], 0, -1)
  redis.call('DEL', KEYS[5])
  local reply = '{"s":' .. cjson.encode(ARGV[3]) .. ',"b":' .. ARGV[9] .. ',"e":['
    .. table.concat(errors, ',') .. ']}'
  redis.call('RPUSH', KEYS[6], reply)
  redis.call('EXPIRE', KEYS[6], ARGV[8])
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[7])
  last = ARGV[7]
end
if last then
  deleted = redis.call('XTRIM', KEYS[1], 'MINID', last) + redis.call('XDEL', KEYS[1], last)
end
if ARGV[10] ~= '' then
  local record = ARGV[10]
  local kept = redis.call('GET', KEYS[8])
  if kept and redis.call('GET', KEYS[3]) ~= ARGV[4] then
    local all, seen = cjson.decode(kept), {}
    for _, bookmark in ipairs(all) do seen[bookmark] = true end
    for _, bookmark in ipairs(cjson.decode(record)) do
      if not seen[bookmark] then table.insert(all, bookmark) end
    end
    record = cjson.encode(all)
  end
  redis.call('SET', KEYS[8], record)
  if tonumber(ARGV[6]) > 0 then
    redis.call('PEXPIRE', KEYS[8], ARGV[6])
  end
end
if deleted > 0 and redis.call('DEL', KEYS[2]) == 1 then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
local left = redis.call('XLEN', KEYS[1])
if ARGV[5] == '' then
  return left
end
if redis.call('GET', KEYS[3]) ~= ARGV[4] then
  return redis.error_reply('LEASELOST lease of ' .. KEYS[1] .. ' is not held by ' .. ARGV[4])
end
if left == 0 then
  redis.call('ZREM', KEYS[4], ARGV[3])
  redis.call('DEL', KEYS[3])
  if ARGV[5] == 'end' then
    redis.call('DEL', KEYS[1], KEYS[7], KEYS[8])
  elseif tonumber(ARGV[6]) > 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[6])
  end
  return 0
end
if ARGV[5] == 'yield' then
  local now = redis.call('TIME')
  redis.call('ZADD', KEYS[4], 'XX', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000), ARGV[3])
  redis.call('DEL', KEYS[3])
end
return left
