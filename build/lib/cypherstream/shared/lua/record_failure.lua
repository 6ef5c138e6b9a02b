#!lua flags=allow-oom
-- Hand a failed write's report to its client, who collects it at its next flush.
-- allow-oom: the report replaces an entry the drain then deletes.
-- KEYS[1] the client's error list; ARGV[1] the report (JSON), ARGV[2] ttl seconds.
redis.call('RPUSH', KEYS[1], ARGV[1])
return redis.call('EXPIRE', KEYS[1], ARGV[2])
