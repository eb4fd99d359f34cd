-- settle(K; ops)
-- Many `release`s and `complete`s in one call, in order (see release.lua
-- and complete.lua): the crawl loop gathers what its pages need and sends it at once, so a
-- busy engine spends a fraction of a round trip per page. Each op is
--   'R', id, n, then n x (host, fp, shard, entry, robots, run, bounded)     a release
--   'C', id, host, pace, requeue, defer_ms, robots, crawl_delay_ms, robots_request,
--        run, counted, n, then n x (host, fp, shard, entry, robots, run, bounded)
--                                                                            a complete
-- Returns {held, late, next}: how many leases were still held, how many completes found
-- their lease gone (reaped after it lapsed, or completed before; a complete of lease 0 only
-- holds its host and counts in neither), and the milliseconds until a host is ready to be
-- claimed from (see next_ready), so that the engine claims then rather than at once.
local i = 1
local held = 0
local late = 0
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'R' then
    local id = ARGV[i + 1]
    local n = tonumber(ARGV[i + 2])
    offer_all(1, n, i + 3)
    i = i + 3 + n * URL_ARGS
    if release_lease(id) then held = held + 1 end
  else
    local id = ARGV[i + 1]
    local host = ARGV[i + 2]
    local pace = ARGV[i + 3]
    local requeue = ARGV[i + 4]
    local defer_ms = tonumber(ARGV[i + 5])
    local robots = ARGV[i + 6]
    local crawl_delay = tonumber(ARGV[i + 7])
    local robots_request = ARGV[i + 8]
    local run = ARGV[i + 9]
    local counted = ARGV[i + 10] == '1'
    local n = tonumber(ARGV[i + 11])
    local links = i + 12
    i = links + n * URL_ARGS
    if complete_lease(id, host, pace, requeue, defer_ms, robots, crawl_delay, robots_request,
        run, counted, links, n) then
      held = held + 1
    elseif id ~= '0' then
      late = late + 1
    end
  end
end
return {held, late, next_ready()}
