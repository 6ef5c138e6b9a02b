#!lua flags=allow-oom
-- Take a lease (a session's, or the sweep's turn) unless someone holds it. allow-oom:
-- a full Redis must still drain, and draining starts with taking the session.
-- KEYS[1] lease; ARGV[1] owner, ARGV[2] ttl ms. Returns 1 when taken, else 0.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
