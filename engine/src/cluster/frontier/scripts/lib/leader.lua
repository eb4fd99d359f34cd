-- The frontier scripts' library, part 5 of 5: the leader's duties (the lease, reaping,
-- promoting retries, deciding the end).

-- Takes or renews the crawl's leader lease for `engine` for `ttl` ms. Returns the leader's
-- epoch when `engine` holds the lease now (a new epoch when it just took it), 0 when another
-- engine does. An engine that paused past its lease finds another leader, or a new epoch of
-- its own: every leader-only write carries the epoch and is refused when it is stale
-- (fencing).
local function elect(engine, ttl)
  local who, epoch = leader()
  if who then
    if who == engine then
      redis.call('PEXPIRE', KEY.leader, ttl)
      return tonumber(epoch)
    end
    return 0
  end
  local fresh = redis.call('INCR', KEY.epoch)
  redis.call('SET', KEY.leader, engine .. ':' .. fresh, 'PX', ttl)
  return fresh
end

-- Returns up to `max` expired leases' requests to the front of their host's queue (their
-- engine died or lost touch); returns how many.
local function reap_leases(max)
  local expired = take_due(KEY.leases, max)
  for _, lease in ipairs(expired) do
    if not lease[3] then free_slot(lease[1], lease[4]) end
    give_back_page(lease[5])
    if lease[6] then
      -- Its page is fetched again: counted then.
      redis.call('HINCRBY', KEY.host .. lease[1], 'pages', -1)
    end
    requeue_front(lease[1], lease[2], lease[7])
  end
  return #expired
end

-- Moves up to `max` deferred requests whose back-off is over to the front of their host's
-- queue; returns how many.
local function promote_due(max)
  local due = take_due(KEY.deferred, max)
  for _, retry in ipairs(due) do
    requeue_front(retry[1], retry[2], retry[7])
  end
  return #due
end

-- Marks the crawl done when it was seeded (or opened) and nothing is queued, leased or
-- deferred but the requests of tasks whose page budget is spent (left queued, as one
-- engine leaves a capped task's), all checked in one step; the caller leads. Returns 1 when
-- it is done (now or before), 0 when work is left.
local function finish_crawl()
  if redis.call('EXISTS', KEY.done) == 1 then return 1 end
  -- Seeded by seed.lua, or opened by a scheduled run or a close (a crawl of scheduled tasks).
  if redis.call('EXISTS', KEY.seeded) == 0 and redis.call('EXISTS', KEY.opened) == 0 then
    return 0
  end
  local queued = tonumber(redis.call('GET', KEY.queued) or '0')
  if queued > 0 then
    local capped = redis.call('HKEYS', KEY.spent)
    for _, task in ipairs(capped) do
      if spent(task) then
        queued = queued - tonumber(redis.call('HGET', KEY.task_queued, task) or '0')
      end
    end
  end
  if queued > 0 or redis.call('ZCARD', KEY.leases) > 0
      or redis.call('ZCARD', KEY.deferred) > 0 then
    return 0
  end
  redis.call('SET', KEY.done, '1')
  return 1
end
