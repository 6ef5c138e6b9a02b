#!lua flags=allow-oom
-- Record the deployment's partition count unless one is recorded; return the recorded
-- one, for the caller to compare with its own. allow-oom: start-up must work on a
-- full Redis, or nothing could start to drain it.
-- KEYS[1] meta hash; ARGV[1] this process's partition count.
redis.call('HSETNX', KEYS[1], 'partitions', ARGV[1])
return tonumber(redis.call('HGET', KEYS[1], 'partitions'))
