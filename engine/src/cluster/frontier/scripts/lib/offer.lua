-- The frontier scripts' library, part 3 of 5: offering URLs (dedup, bounds, scheduled
-- runs' seen sets) and settling a batch of offers.

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
