-- finish(K; epoch)
-- Leader only: marks the crawl done when it was seeded and nothing is queued, leased or
-- deferred, all checked in one step. Returns 1 when it is done (now or before), 0 when work
-- is left, -1 when `epoch` is not the current leader's.
if redis.call('EXISTS', K .. ':done') == 1 then return 1 end
if not is_leader(ARGV[1]) then return -1 end
-- Seeded by seed.lua, or opened by a scheduled run or a close (a crawl of scheduled tasks).
if redis.call('EXISTS', K .. ':seeded') == 0 and redis.call('EXISTS', K .. ':opened') == 0 then
  return 0
end
local queued = tonumber(redis.call('GET', K .. ':queued') or '0')
if queued > 0 or redis.call('ZCARD', K .. ':leases') > 0
    or redis.call('ZCARD', K .. ':deferred') > 0 then
  return 0
end
redis.call('SET', K .. ':done', '1')
return 1
