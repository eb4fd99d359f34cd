-- complete(K; id, host, per_host, max_queue, hold_ms, requeue, defer_ms, robots,
--          crawl_delay_ms, n, then n x (host, fp, shard, entry, robots))
-- Ends lease `id`: frees its host's slot (unless `release` did), holds the host `hold_ms` from now when that is
-- later than it was held anyway (429/503 back-off), puts `requeue` (when not empty) back at
-- the front of the host's queue, or among the deferred requests due `defer_ms` from now (a
-- retry after a back-off), records the host's robots.txt when `robots` is not empty (and
-- its Crawl-delay), and queues the page's new links with dedup, all at once. A lease that no
-- longer exists (completed already, or expired and reaped) changes nothing but the host's
-- hold (a 429 still slows the host): returns 0.
local id = ARGV[1]
local host = ARGV[2]
local per_host = tonumber(ARGV[3])
local max_queue = tonumber(ARGV[4])
local hold_until = now_ms() + tonumber(ARGV[5])
local requeue = ARGV[6]
local defer_ms = tonumber(ARGV[7])
local robots = ARGV[8]
local crawl_delay = tonumber(ARGV[9])
local n = tonumber(ARGV[10])
local hk = K .. ':host:' .. host
local next_at = tonumber(redis.call('HGET', hk, 'next_at') or '0')
if hold_until > next_at then
  redis.call('HSET', hk, 'next_at', hold_until)
end
local lk = K .. ':leases:' .. id
if redis.call('HGET', lk, 'host') ~= host then
  reschedule(host, per_host)
  return 0
end
local lease = redis.call('HMGET', lk, 'freed', 'engine')
redis.call('DEL', lk)
redis.call('ZREM', K .. ':leases', id)
if lease[1] ~= '1' then free_slot(host, lease[2]) end
if robots ~= '' then
  redis.call('HSET', K .. ':robots', host, robots)
  redis.call('HSET', hk, 'robots', 'known')
  local d = tonumber(redis.call('HGET', hk, 'delay') or '0')
  if crawl_delay > d then redis.call('HSET', hk, 'delay', crawl_delay) end
end
if requeue ~= '' and defer_ms > 0 and redis.call('HGET', hk, 'robots') == 'pending' then
  -- The robots.txt request waits out a back-off: the host sends nothing meanwhile.
  redis.call('HSET', hk, 'robots', 'deferred')
end
if requeue ~= '' and defer_ms > 0 then
  local id2 = redis.call('INCR', K .. ':deferred_seq')
  redis.call('HSET', K .. ':deferred:' .. id2, 'host', host, 'entry', requeue)
  redis.call('ZADD', K .. ':deferred', now_ms() + defer_ms, id2)
elseif requeue ~= '' then
  requeue_front(host, requeue, per_host)
end
offer_all(11, n, 1, max_queue, per_host)
reschedule(host, per_host)
return 1
