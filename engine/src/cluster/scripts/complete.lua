-- complete(K; id, per_host, max_queue, hold_ms, requeue, n, then n x (host, fp, shard, entry))
-- Ends lease `id`: frees its host's slot, holds the host `hold_ms` from now when that is
-- later than it was held anyway (429/503 back-off), puts `requeue` back at the front of the host's queue when it is
-- not empty (a retry), and queues the page's new links with dedup, all at once. A lease that
-- no longer exists (completed already, or expired and reaped) changes nothing: returns 0.
local id = ARGV[1]
local per_host = tonumber(ARGV[2])
local max_queue = tonumber(ARGV[3])
local hold_until = now_ms() + tonumber(ARGV[4])
local requeue = ARGV[5]
local n = tonumber(ARGV[6])
local lk = K .. ':lease:' .. id
local host = redis.call('HGET', lk, 'host')
if not host then return 0 end
redis.call('DEL', lk)
redis.call('ZREM', K .. ':leases', id)
local hk = K .. ':host:' .. host
redis.call('HINCRBY', hk, 'inflight', -1)
local next_at = tonumber(redis.call('HGET', hk, 'next_at') or '0')
if hold_until > next_at then
  redis.call('HSET', hk, 'next_at', hold_until)
end
if requeue ~= '' then
  redis.call('LPUSH', K .. ':q:' .. host, requeue)
  redis.call('INCR', K .. ':queued')
end
for i = 0, n - 1 do
  local b = 7 + i * 4
  offer(ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], 1, max_queue, per_host)
end
reschedule(host, per_host)
return 1
