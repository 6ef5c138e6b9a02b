#!lua flags=allow-oom
-- Append a write that failed for good to the dead-letter stream. allow-oom: it moves
-- an entry out of a session stream that the drain then deletes, so a full Redis drains.
-- KEYS[1] dead-letter stream; ARGV field/value pairs. Returns the dead letter's id.
return redis.call('XADD', KEYS[1], '*', unpack(ARGV))
