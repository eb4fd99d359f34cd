-- claim(K; engine, max, lease_ms)
-- Hands out up to `max` requests of hosts that may be sent to now, at most the crawl's
-- `per_host` in flight per host across every engine, and moves each host's next allowed
-- time the crawl's `delay_ms` on in the same step. Engines that asked for work in the last two seconds share each
-- host's slots: one engine holds at most its fair part of them, so an engine that frees a
-- slot cannot keep a host to itself by claiming again at once. A host whose robots.txt is pending sends only that, one at a time.
-- Each request is leased, not popped: it comes back to its queue if the lease is neither
-- completed nor extended before it ends. A page of a host whose pages fetched and in flight
-- reach the crawl's `--max_pages_per_host` is handed out marked over the cap, taking no host
-- slot and no delay: the engine counts it skipped and completes it. A host's requests are
-- taken from its lanes (see `pop_entry`): its robots.txt request first, then its tasks' in
-- turn; a paused task's stay queued. Returns the
-- milliseconds until the next host is ready (-1: none queued), then id, host, entry, over
-- the cap (1 or 0) quadruples.
local engine = ARGV[1]
local max = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[3])
local per_host = limit().per_host
local delay = limit().delay_ms
local now = now_ms()
redis.call('ZADD', KEY.claimers, now, engine)
redis.call('ZREMRANGEBYSCORE', KEY.claimers, '-inf', now - 2000)
local engines = math.max(1, redis.call('ZCARD', KEY.claimers))
local cap = limit().max_pages
-- Tasks' paused states, read once in this call.
local states = {}
local share = math.ceil(per_host / engines)
local out = {0}
local claimed = 0
-- Lease ids for this claim, reserved at once (unused ones are skipped).
local base = redis.call('INCRBY', KEY.lease_seq, max) - max + 1
-- Some ready hosts may be at this engine's share: look a little further than `max`.
local hosts = redis.call('ZRANGEBYSCORE', KEY.ready, '-inf', now, 'LIMIT', 0, max * 2 + 16)
for _, host in ipairs(hosts) do
  if claimed >= max then break end
  local hk = KEY.host .. host
  local h = redis.call('HMGET', hk, 'delay', 'robots', 'pages')
  local pages = tonumber(h[3] or '0')
  local host_delay = math.max(delay, tonumber(h[1] or '0'))
  local limit = per_host
  local robots = h[2]
  -- While its robots.txt is unknown a host sends only that; while that waits out a
  -- back-off, nothing.
  if robots == 'pending' then limit = 1 elseif robots == 'deferred' then limit = 0 end
  -- The host's counts are read once and written once, whatever it hands out.
  local held = redis.call('HMGET', hk, 'inflight', 'e:' .. engine)
  local inflight = tonumber(held[1] or '0')
  local mine = tonumber(held[2] or '0')
  local took = 0
  repeat
    if inflight >= limit or mine >= share then break end
    local entry, task = pop_entry(host, states)
    if not entry then break end
    local id = base + claimed
    local over = cap > 0 and pages + inflight >= cap and not is_robots(entry)
    if over then
      -- Its slot is free already: completing it gives nothing back.
      redis.call('HSET', KEY.lease .. id, 'host', host, 'entry', entry, 'engine', engine,
        'task', task, 'freed', '1')
    else
      inflight = inflight + 1
      mine = mine + 1
      took = took + 1
      redis.call('HSET', KEY.lease .. id, 'host', host, 'entry', entry, 'engine', engine,
        'task', task)
    end
    redis.call('ZADD', KEY.leases, now + lease_ms, id)
    out[#out + 1] = id
    out[#out + 1] = host
    out[#out + 1] = entry
    out[#out + 1] = over and 1 or 0
    claimed = claimed + 1
  until (host_delay > 0 and took > 0) or claimed >= max
  if took > 0 then
    redis.call('HSET', hk, 'inflight', inflight, 'next_at', now + host_delay,
      'e:' .. engine, mine)
  end
  if robots == 'deferred' or (robots == 'pending' and inflight >= 1) then
    -- Ready again when its robots.txt request completes or comes back.
    redis.call('ZREM', KEY.ready, host)
  else
    reschedule(host)
  end
end
if claimed > 0 then
  redis.call('DECRBY', KEY.queued, claimed)
end
out[1] = next_ready()
return out
