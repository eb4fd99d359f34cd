-- The frontier scripts' library, part 4 of 5: ending leases (release, complete), hosts'
-- 429/503 pace and when the next host is ready.

-- Gives back the host slot of lease `id` once (its page was answered; its items are being
-- stored), and counts the page among its host's pages (see `limit().max_pages`). Returns
-- whether the lease was still held.
local function release_lease(id)
  local lk = KEY.lease .. id
  local lease = redis.call('HMGET', lk, 'host', 'engine', 'freed')
  if lease[1] and lease[3] ~= '1' then
    redis.call('HSET', lk, 'freed', '1', 'counted', '1')
    redis.call('HINCRBY', KEY.host .. lease[1], 'pages', 1)
    free_slot(lease[1], lease[2])
    reschedule(lease[1])
    return true
  end
  return false
end

-- Moves `host`'s 429/503 back-off, kept here for every engine, as `pace` says: '' leaves
-- it, 'R' halves it (the host answered well; under 50 ms it is forgotten), 'T' doubles it
-- (from 250 ms up to `limit().max_backoff_ms`) and holds the host that long, 'T<ms>' doubles
-- it and holds the host for the Retry-After it sent (at most that). Returns the hold in ms.
local function pace_host(host, pace)
  if pace == '' then return 0 end
  local hk = KEY.host .. host
  local backoff = tonumber(redis.call('HGET', hk, 'backoff') or '0')
  if pace == 'R' then
    if backoff > 0 then
      backoff = math.floor(backoff / 2)
      if backoff < 50 then
        redis.call('HDEL', hk, 'backoff')
      else
        redis.call('HSET', hk, 'backoff', backoff)
      end
    end
    return 0
  end
  local max = math.max(limit().max_backoff_ms, 250)
  backoff = math.min(math.max(backoff * 2, 250), max)
  redis.call('HSET', hk, 'backoff', backoff)
  local retry_after = tonumber(string.sub(pace, 2))
  if retry_after then return math.min(retry_after, max) end
  return backoff
end

-- Ends lease `id` of `host` (see complete.lua); the page's `n` links start at ARGV[links].
-- `pace` moves the host's back-off (see pace_host). `robots_request` says whether it was the
-- host's robots.txt request: '1' yes, '0' no, '?' not known (its record did not read): then
-- it was when the host's robots.txt is still pending, since such a host sends nothing else,
-- and `robots` is stored only then. `counted`: a page sent and done for good, one more of
-- the host's pages for `--max_pages_per_host`. `run` is the scheduled run of its
-- request (empty for none), which has one page fewer open when the request is done for
-- good. Returns whether the lease was still held.
local function complete_lease(id, host, pace, requeue, defer_ms, robots, crawl_delay,
    robots_request, run, counted, links, n)
  local hk = KEY.host .. host
  local hold_ms = pace_host(host, pace)
  if hold_ms > 0 then
    local hold_until = now_ms() + hold_ms
    local next_at = tonumber(redis.call('HGET', hk, 'next_at') or '0')
    if hold_until > next_at then
      redis.call('HSET', hk, 'next_at', hold_until)
    end
  end
  -- The page's links first, whatever became of the lease: the engine that fetched it took
  -- them as offered, and a lease reaped meanwhile (an outage longer than the lease) must not
  -- take them along. Dedup makes a second offer of them harmless.
  offer_all(1, n, links)
  local lk = KEY.lease .. id
  local lease = redis.call('HMGET', lk, 'host', 'freed', 'engine', 'budget', 'counted', 'task')
  local task = lease[6] or ''
  if lease[1] ~= host then
    reschedule(host)
    return false
  end
  if requeue ~= '' then
    -- Not done for good: its page of the task's budget is taken again when it is sent.
    give_back_page(lease[4])
  end
  redis.call('DEL', lk)
  redis.call('ZREM', KEY.leases, id)
  if lease[2] ~= '1' then free_slot(host, lease[3]) end
  if counted and requeue == '' and lease[5] ~= '1' then
    redis.call('HINCRBY', hk, 'pages', 1)
  end
  if robots_request == '?' and redis.call('HGET', hk, 'robots') ~= 'pending' then
    robots = ''
  end
  if robots ~= '' then
    redis.call('HSET', KEY.robots, host, robots)
    redis.call('HSET', hk, 'robots', 'known')
    local d = tonumber(redis.call('HGET', hk, 'delay') or '0')
    if crawl_delay > d then redis.call('HSET', hk, 'delay', crawl_delay) end
  end
  if robots_request == '1' and requeue ~= '' and defer_ms > 0
      and redis.call('HGET', hk, 'robots') == 'pending' then
    -- The robots.txt request waits out a back-off: the host sends nothing meanwhile.
    redis.call('HSET', hk, 'robots', 'deferred')
  end
  if requeue ~= '' and defer_ms > 0 then
    local id2 = redis.call('INCR', KEY.deferred_seq)
    redis.call('HSET', KEY.deferral .. id2, 'host', host, 'entry', requeue, 'task', task)
    redis.call('ZADD', KEY.deferred, now_ms() + defer_ms, id2)
  elseif requeue ~= '' then
    requeue_front(host, requeue, task)
  end
  if requeue == '' then
    -- After its links are counted, so a run's count never touches zero before its end.
    run_open(run, -1)
  end
  if lease[2] ~= '1' or hold_ms > 0 or robots ~= '' then
    -- Its slot came free here, or its pace changed (requeues reschedule themselves).
    reschedule(host)
  end
  return true
end

-- Milliseconds until the next host is ready to be claimed from (0: one is now; -1: nothing
-- is queued at all; 1000 when requests are queued but no host is ready, held by slots or
-- robots.txt, which a completion will free).
local function next_ready()
  local next = redis.call('ZRANGE', KEY.ready, 0, 0, 'WITHSCORES')
  if next[2] then
    return math.max(0, tonumber(next[2]) - now_ms())
  elseif tonumber(redis.call('GET', KEY.queued) or '0') == 0 then
    return -1
  end
  return 1000
end
