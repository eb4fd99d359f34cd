-- reap(K; per_host, max)
-- Returns up to `max` expired leases' requests to the front of their host's queue (their
-- engine died or lost touch); returns how many.
local per_host = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', K .. ':leases', '-inf', now, 'LIMIT', 0, max)
for _, id in ipairs(ids) do
  local lk = K .. ':lease:' .. id
  local host = redis.call('HGET', lk, 'host')
  local entry = redis.call('HGET', lk, 'entry')
  redis.call('DEL', lk)
  redis.call('ZREM', K .. ':leases', id)
  if host then
    redis.call('HINCRBY', K .. ':host:' .. host, 'inflight', -1)
    requeue_front(host, entry, per_host)
  end
end
return #ids
