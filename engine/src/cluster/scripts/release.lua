-- release(K; id, per_host, max_queue, n, then n x (host, fp, shard, entry, robots))
-- The request of lease `id` was answered and its page's items are being stored: gives back
-- its host slot, so the host may be sent its next request, and queues the page's new links
-- with dedup now, so the crawl does not wait on the item store to find more. The lease
-- completes (see complete) once the items are stored; should the engine die before, the page
-- is fetched again and its links are offered again, which dedup makes harmless. Returns 1
-- when the lease was still held.
local id = ARGV[1]
local per_host = tonumber(ARGV[2])
local max_queue = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
offer_all(5, n, 1, max_queue, per_host)
local lk = K .. ':leases:' .. id
local host = redis.call('HGET', lk, 'host')
if host and redis.call('HSETNX', lk, 'freed', '1') == 1 then
  free_slot(host, redis.call('HGET', lk, 'engine'))
  reschedule(host, per_host)
  return 1
end
return 0
