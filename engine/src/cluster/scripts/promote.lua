-- promote(K; epoch, per_host, max)
-- Leader only: moves up to `max` deferred requests whose back-off is over to the front of
-- their host's queue. Returns how many, or -1 when `epoch` is not the current leader's.
if not is_leader(ARGV[1]) then return -1 end
local per_host = tonumber(ARGV[2])
local max = tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', K .. ':deferred', '-inf', now_ms(), 'LIMIT', 0, max)
for _, id in ipairs(ids) do
  local dk = K .. ':deferred:' .. id
  local host = redis.call('HGET', dk, 'host')
  local entry = redis.call('HGET', dk, 'entry')
  redis.call('DEL', dk)
  redis.call('ZREM', K .. ':deferred', id)
  if host then
    requeue_front(host, entry, per_host)
  end
end
return #ids
