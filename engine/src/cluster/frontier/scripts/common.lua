-- Shared by every frontier script. KEYS[1] is the crawl's key prefix ("{spinneret:NAME}"):
-- every key of a crawl carries its hash tag, so one crawl lives on one Redis Cluster slot.
-- `K` (the prefix) and the table `KEY` of the crawl's keys (engine/src/cluster/keys.rs)
-- come before this file: a key is named `KEY.leader`, or `KEY.host .. host` in a family.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Whether `epoch` is the epoch of the engine holding the leader lease now.
-- The engine and epoch of the leader lease ("ENGINE:EPOCH"; the engine id may hold colons),
-- or nil when no engine holds it.
local function leader()
  local held = redis.call('GET', KEY.leader)
  if not held then return nil end
  return string.match(held, '^(.*):(%d+)$')
end

-- Whether `epoch` is the epoch of the engine holding the leader lease now.
local function is_leader(epoch)
  local _, current = leader()
  return current ~= nil and current == tostring(epoch)
end

-- The crawl's politeness limits, kept once with its settings in `limits` (written with the
-- settings by the engine that stores them, see settings.rs and limits.rs) and read at most
-- once per call: `per_host` requests in flight per host across every engine, `max_queue`
-- links queued per host, `delay_ms` between two requests to a host, `max_backoff_ms` the
-- longest 429/503 back-off, and `max_pages` a host's pages fetched, in flight and queued
-- (`--max_pages_per_host`; 0: no cap). A crawl without them (deleted under the engines by
-- `--fresh`, or evicted) fails the call, saying so, rather than crawl with made-up limits.
local LIMIT_READ = nil
local function limit()
  if LIMIT_READ == nil then
    local l = redis.call('HMGET', KEY.limits, 'per_host', 'max_queue_per_host', 'delay_ms',
      'max_backoff_ms', 'max_pages_per_host')
    for i = 1, 5 do
      if not l[i] then
        error(redis.error_reply('the crawl has no politeness limits in redis (its keys were ' ..
          'deleted or evicted): start its engines again'))
      end
    end
    LIMIT_READ = {
      per_host = math.max(1, tonumber(l[1]) or 1),
      max_queue = tonumber(l[2]) or 0,
      delay_ms = tonumber(l[3]) or 0,
      max_backoff_ms = tonumber(l[4]) or 0,
      max_pages = tonumber(l[5]) or 0,
    }
  end
  return LIMIT_READ
end

-- Whether `entry` is a robots.txt request: its head (see entry.rs) says so. Records from
-- before heads read as pages.
local function is_robots(entry)
  return string.sub(entry, 1, 4) == 'spn\2' and string.byte(entry, 5) == 1
end

-- A host's requests wait in lanes: `q:HOST` holds its robots.txt request (and requests
-- queued before lanes were kept), sent first; `q:HOST#TASK` holds each task's, taken in turn
-- through the list `tq:HOST` of the tasks with requests there, skipping paused tasks, whose
-- requests stay queued, unclaimed. The host's hash counts its requests ('queued'),
-- `task_queued` counts each task's across hosts, and the set `th:TASK` holds the hosts with
-- requests of the task, made ready again when it is resumed.
local function lane(host, task)
  if task == '' then return KEY.q .. host end
  return KEY.q .. host .. '#' .. task
end

-- Task `task`'s state in `task_states` ("STATE#RUN", or "STATE" of run 0), as name and run
-- ("running", "0" when none was recorded).
local function task_state(task)
  local state = redis.call('HGET', KEY.task_states, task) or ''
  local name, run = string.match(state, '^(%a+)#(%d+)$')
  if name then return name, run end
  if state == '' then return 'running', '0' end
  return state, '0'
end

-- Whether task `task` is paused.
local function paused(task)
  return task_state(task) == 'paused'
end

-- Whether task `task` spent its page budget in its current run: the hash `spent` holds the
-- run whose budget is spent (see reserve.lua), the task's state the run it is in. A run
-- that is running, paused, or done (a scheduled run that ended capped, see runs.lua) holds
-- its requests until the next run; one that was closed, stopped, killed or timed out holds
-- nothing: its requests are claimed and dropped by the engines. `name` and `run` are the
-- task's state when known already.
local function spent(task, name, run)
  local spent_run = redis.call('HGET', KEY.spent, task)
  if not spent_run then return false end
  if not name then name, run = task_state(task) end
  return spent_run == run and (name == 'running' or name == 'paused' or name == 'done')
end

-- Whether task `task`'s requests are held in their lanes, unclaimed: it is paused, or spent
-- its page budget (its requests stay queued, as one engine keeps a capped task's). `cache`,
-- when given, keeps the answers of one call.
local function held(task, cache)
  if cache and cache[task] ~= nil then return cache[task] end
  local name, run = task_state(task)
  local is = name == 'paused' or spent(task, name, run)
  if cache then cache[task] = is end
  return is
end

-- Adds `n` to a count in hash `hash` under `field`, never below zero.
local function count(hash, field, n)
  if redis.call('HINCRBY', hash, field, n) < 0 then
    redis.call('HSET', hash, field, 0)
  end
end

-- Queues `entry` in `host`'s lane of `task` ('' for the robots.txt lane), at the back, or at
-- the front when `front`.
local function push_entry(host, task, entry, front)
  local q = lane(host, task)
  local len
  if front then len = redis.call('LPUSH', q, entry) else len = redis.call('RPUSH', q, entry) end
  count(KEY.host .. host, 'queued', 1)
  if task ~= '' then
    count(KEY.task_queued, task, 1)
    if len == 1 then
      redis.call('RPUSH', KEY.tq .. host, task)
      redis.call('SADD', KEY.th .. task, host)
    end
  end
end

-- Takes `host`'s next request: its robots.txt lane first, then its tasks' lanes in turn,
-- skipping held tasks (`cache` as for `held`). Returns the entry and its task ('' for
-- the robots.txt lane), or nil when nothing may be taken.
local function pop_entry(host, cache)
  local entry = redis.call('LPOP', KEY.q .. host)
  if entry then
    count(KEY.host .. host, 'queued', -1)
    return entry, ''
  end
  local tq = KEY.tq .. host
  for _ = 1, redis.call('LLEN', tq) do
    -- Round the tasks: the one looked at goes to the back.
    -- (RPOPLPUSH rather than LMOVE, which needs Redis 6.2.)
    local task = redis.call('RPOPLPUSH', tq, tq)
    if not held(task, cache) then
      local q = lane(host, task)
      entry = redis.call('LPOP', q)
      if not entry or redis.call('LLEN', q) == 0 then
        redis.call('LREM', tq, 0, task)
        redis.call('SREM', KEY.th .. task, host)
      end
      if entry then
        count(KEY.host .. host, 'queued', -1)
        count(KEY.task_queued, task, -1)
        return entry, task
      end
    end
  end
  return nil
end

-- Whether `host` has a request that may be claimed: in its robots.txt lane, or of a task
-- that is not held.
local function claimable(host)
  if redis.call('LLEN', KEY.q .. host) > 0 then return true end
  for _, task in ipairs(redis.call('LRANGE', KEY.tq .. host, 0, -1)) do
    if not held(task) then return true end
  end
  return false
end

-- Puts `host` in the ready set (scored by when it may next be sent to) when it has a
-- request that may be claimed and room for one more in flight; takes it out otherwise.
local function reschedule(host)
  local h = redis.call('HMGET', KEY.host .. host, 'inflight', 'next_at')
  if tonumber(h[1] or '0') < limit().per_host and claimable(host) then
    redis.call('ZADD', KEY.ready, tonumber(h[2] or '0'), host)
  else
    redis.call('ZREM', KEY.ready, host)
  end
end

-- Makes the hosts holding requests of `task` ready again (it was resumed, a new run of it
-- started, or its budget has room again).
local function reschedule_task(task)
  for _, host in ipairs(redis.call('SMEMBERS', KEY.th .. task)) do
    reschedule(host)
  end
end

-- Gives back the page a lease took of its task's budget `budget` ("TASK#RUN", see
-- reserve.lua), when it took one: its request was not done for good (sent again later, or
-- reaped). A task whose budget was spent has room again: its requests may be claimed.
local function give_back_page(budget)
  if budget and budget ~= '' then
    if redis.call('HINCRBY', KEY.pages, budget, -1) < 0 then
      redis.call('HSET', KEY.pages, budget, 0)
    end
    local task, run = string.match(budget, '^(.*)#(%d+)$')
    if task and redis.call('HGET', KEY.spent, task) == run then
      redis.call('HDEL', KEY.spent, task)
      reschedule_task(task)
    end
  end
end

-- Puts `entry` of `task` back at the front of `host`'s lane (a lease that ended, a retry
-- that is due). A host whose robots.txt request waited out a back-off may send it again.
local function requeue_front(host, entry, task)
  local hk = KEY.host .. host
  if redis.call('HGET', hk, 'robots') == 'deferred' then
    redis.call('HSET', hk, 'robots', 'pending')
  end
  push_entry(host, task or '', entry, true)
  redis.call('INCR', KEY.queued)
  reschedule(host)
end

-- Frees one of `host`'s in-flight slots, held by `engine`.
local function free_slot(host, engine)
  local hk = KEY.host .. host
  redis.call('HINCRBY', hk, 'inflight', -1)
  if engine and redis.call('HINCRBY', hk, 'e:' .. engine, -1) <= 0 then
    redis.call('HDEL', hk, 'e:' .. engine)
  end
end


-- Takes up to `max` records of sorted set `set` whose time has come (score <= now): each is
-- a hash `set:ID` of host and entry, deleted as it is taken. Returns them as {host, entry,
-- freed, engine, budget, counted, task}, `freed` saying whether a lease's host slot was given
-- back already, `budget` the task budget a lease took a page of (see reserve.lua), `counted`
-- whether its page was counted among its host's pages when it was released, `task` the
-- lane it came from.
local function take_due(set, max)
  local out = {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', set, '-inf', now_ms(), 'LIMIT', 0, max)) do
    local hash = set .. ':' .. id
    local record = redis.call('HMGET', hash, 'host', 'entry', 'freed', 'engine', 'budget',
      'counted', 'task')
    redis.call('DEL', hash)
    redis.call('ZREM', set, id)
    if record[1] then
      out[#out + 1] = {record[1], record[2], record[3] == '1', record[4] or nil,
        record[5] or nil, record[6] == '1', record[7] or ''}
    end
  end
  return out
end

-- Queues `entry` for `host` unless the fingerprint was seen; returns 0 queued, 1 seen,
-- 2 refused (the host's queue holds `limit().max_queue` entries and `bounded` is set: a link; seeds
-- and redirect targets, offered once, are never refused), 3 refused (the host's pages
-- fetched, in flight and queued reach `--max_pages_per_host`, which holds for every URL). `robots`,
-- when not empty, is the host's robots.txt request: queued first if the host is new, and
-- the host sends nothing else until its rules are known (see claim). `batch` carries what
-- one call's offers share: queue lengths and hosts to reschedule, settled by `offer_end`.
-- `run`, when not empty, is the scheduled run the URL belongs to (see `run_open`): a URL
-- queued counts as open in it.
local function offer(host, fp, shard, entry, robots, run, bounded, batch, task)
  local len = batch.lengths[host]
  if len == nil then
    -- Its pages queued: every request but those of its first lane (its robots.txt request,
    -- which counts toward no bound). A host queued before lanes were kept has its requests
    -- there, uncounted.
    local all = tonumber(redis.call('HGET', KEY.host .. host, 'queued') or '0')
    len = math.max(0, all - redis.call('LLEN', lane(host, '')))
  end
  -- An engine sends a host's robots.txt request with the first URL of the host it offers,
  -- seen or not, so no host is queued without one.
  if robots ~= '' and redis.call('HSETNX', KEY.host .. host, 'robots', 'pending') == 1 then
    -- In the first lane: the host's rules come before anything queued for it.
    push_entry(host, '', robots, true)
    batch.queued = batch.queued + 1
    batch.hosts[host] = true
  end
  batch.lengths[host] = len
  -- A scheduled run's URLs have a seen set of their own, deleted once the next run starts
  -- (see forget_run): the sets never outgrow their compact encoding across runs.
  local seen = KEY.seen .. shard
  if run ~= '' then seen = KEY.seen .. run .. ':' .. shard end
  if redis.call('SISMEMBER', seen, fp) == 1 then
    return 1
  end
  if limit().max_pages > 0 then
    local taken = batch.taken[host]
    if taken == nil then
      local h = redis.call('HMGET', KEY.host .. host, 'pages', 'inflight', 'robots')
      taken = tonumber(h[1] or '0') + tonumber(h[2] or '0')
      -- A host whose robots.txt is pending has only that request in flight, if any.
      if h[3] == 'pending' then taken = math.max(0, taken - 1) end
      batch.taken[host] = taken
    end
    if len + taken >= limit().max_pages then
      return 3
    end
  end
  if bounded == 1 and len >= limit().max_queue then
    return 2
  end
  redis.call('SADD', seen, fp)
  batch.seen = batch.seen + 1
  push_entry(host, task, entry, false)
  batch.lengths[host] = len + 1
  batch.queued = batch.queued + 1
  batch.hosts[host] = true
  if run ~= '' then
    batch.runs[run] = (batch.runs[run] or 0) + 1
  end
  return 0
end

-- Shards of the seen set (SEEN_SHARDS in frontier.rs).
local SEEN_SHARDS = 4096

-- Deletes the seen set of the scheduled run keyed `run` ("RUN:TASK"), once the next run of
-- its task started: nothing of it is offered any more.
local function forget_run(run)
  local keys = {}
  for shard = 0, SEEN_SHARDS - 1 do
    keys[#keys + 1] = KEY.seen .. run .. ':' .. shard
    if #keys == 512 then
      redis.call('UNLINK', unpack(keys))
      keys = {}
    end
  end
  if #keys > 0 then redis.call('UNLINK', unpack(keys)) end
end

-- What one call's offers share.
local function offer_batch()
  return {lengths = {}, hosts = {}, queued = 0, runs = {}, seen = 0, taken = {}}
end

-- A scheduled run's requests queued, leased or deferred (its pages open) are counted in
-- the hash `run_open` under the run's key ("RUN:TASK"), so the leader can tell when the run
-- has ended. Adds `n` to run `run`'s count, forgetting it at zero.
local function run_open(run, n)
  if run == '' or n == 0 then return end
  if redis.call('HINCRBY', KEY.run_open, run, n) <= 0 then
    redis.call('HDEL', KEY.run_open, run)
  end
end

-- Settles a batch of offers: the queued count, the hosts made ready, and a crawl that was
-- done reopened by new work (a task added to engines that serve).
local function offer_end(batch)
  if batch.queued > 0 then
    redis.call('INCRBY', KEY.queued, batch.queued)
    redis.call('DEL', KEY.done)
  end
  if batch.seen > 0 then
    -- Distinct URLs seen, every run's, for the engines' summaries.
    redis.call('INCRBY', KEY.seen_count, batch.seen)
  end
  for host, _ in pairs(batch.hosts) do
    reschedule(host)
  end
  for run, n in pairs(batch.runs) do
    run_open(run, n)
  end
end

-- Arguments per offered URL: host, fingerprint, shard, entry, robots, run, bounded ('1' for
-- a link, '0' for a seed or a redirect's target), task (its lane).
local URL_ARGS = 8

-- Offers `n` URLs given from ARGV[b] on, URL_ARGS arguments each, under the crawl's
-- limits; returns their codes. With `bounded` 0 no URL is refused; with 1 each URL's own
-- flag says.
local function offer_all(bounded, n, b)
  local out = {}
  local batch = offer_batch()
  for i = 0, n - 1 do
    local a = b + i * URL_ARGS
    local limit = 0
    if bounded == 1 and ARGV[a + 6] == '1' then limit = 1 end
    out[#out + 1] = offer(ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4],
      ARGV[a + 5], limit, batch, ARGV[a + 7])
  end
  offer_end(batch)
  return out
end

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
