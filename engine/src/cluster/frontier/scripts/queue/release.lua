-- release(K; id, n, then n x (host, fp, shard, entry, robots, run, bounded, task))
-- The request of lease `id` was answered and its page's items are being stored: gives back
-- its host slot, so the host may be sent its next request, and queues the page's new links
-- with dedup now, so the crawl does not wait on the item store to find more. The lease
-- completes (see complete) once the items are stored; should the engine die before, the page
-- is fetched again and its links are offered again, which dedup makes harmless. Returns 1
-- when the lease was still held.
offer_all(1, tonumber(ARGV[2]), 3)
if release_lease(ARGV[1]) then return 1 end
return 0
