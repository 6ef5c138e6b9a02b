-- Acknowledge a flush sentinel: hand the errors the sentinel's client met since
-- its previous flush to the waiting flush, then remove the sentinel.
-- KEYS[1] stream, KEYS[2] the client's error list, KEYS[3] the flush's reply list
-- ARGV[1] group, ARGV[2] sentinel entry id, ARGV[3] reply ttl seconds, ARGV[4] session
local errors = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
local reply = '{"s":' .. cjson.encode(ARGV[4]) .. ',"e":[' .. table.concat(errors, ',') .. ']}'
redis.call('RPUSH', KEYS[3], reply)
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return #errors
