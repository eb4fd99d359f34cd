-- Shared by every frontier script. KEYS[1] is the crawl's key prefix ("{spinneret:NAME}"):
-- every key of a crawl carries its hash tag, so one crawl lives on one Redis Cluster slot.
local K = KEYS[1]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Whether `epoch` is the epoch of the engine holding the leader lease now.
-- The engine and epoch of the leader lease ("ENGINE:EPOCH"; the engine id may hold colons),
-- or nil when no engine holds it.
local function leader()
  local held = redis.call('GET', K .. ':leader')
  if not held then return nil end
  return string.match(held, '^(.*):(%d+)$')
end

-- Whether `epoch` is the epoch of the engine holding the leader lease now.
local function is_leader(epoch)
  local _, current = leader()
  return current ~= nil and current == tostring(epoch)
end

-- Puts `host` in the ready set (scored by when it may next be sent to) when it has queued
-- requests and room for one more in flight; takes it out otherwise.
local function reschedule(host, per_host)
  local hk = K .. ':host:' .. host
  local inflight = tonumber(redis.call('HGET', hk, 'inflight') or '0')
  if inflight < per_host and redis.call('LLEN', K .. ':q:' .. host) > 0 then
    local next_at = tonumber(redis.call('HGET', hk, 'next_at') or '0')
    redis.call('ZADD', K .. ':ready', next_at, host)
  else
    redis.call('ZREM', K .. ':ready', host)
  end
end

-- Puts `entry` back at the front of `host`'s queue (a lease that ended, a retry that is due).
-- A host whose robots.txt request waited out a back-off may send it again.
local function requeue_front(host, entry, per_host)
  local hk = K .. ':host:' .. host
  if redis.call('HGET', hk, 'robots') == 'deferred' then
    redis.call('HSET', hk, 'robots', 'pending')
  end
  redis.call('LPUSH', K .. ':q:' .. host, entry)
  redis.call('INCR', K .. ':queued')
  reschedule(host, per_host)
end

-- Frees one of `host`'s in-flight slots, held by `engine`.
local function free_slot(host, engine)
  local hk = K .. ':host:' .. host
  redis.call('HINCRBY', hk, 'inflight', -1)
  if engine and redis.call('HINCRBY', hk, 'e:' .. engine, -1) <= 0 then
    redis.call('HDEL', hk, 'e:' .. engine)
  end
end

-- Takes up to `max` records of sorted set `set` whose time has come (score <= now): each is
-- a hash `set:ID` of host and entry, deleted as it is taken. Returns them as {host, entry,
-- freed, engine}, `freed` saying whether a lease's host slot was given back already.
local function take_due(set, max)
  local out = {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', set, '-inf', now_ms(), 'LIMIT', 0, max)) do
    local hash = set .. ':' .. id
    local record = redis.call('HMGET', hash, 'host', 'entry', 'freed', 'engine')
    redis.call('DEL', hash)
    redis.call('ZREM', set, id)
    if record[1] then
      out[#out + 1] = {record[1], record[2], record[3] == '1', record[4] or nil}
    end
  end
  return out
end

-- Queues `entry` for `host` unless the fingerprint was seen; returns 0 queued, 1 seen,
-- 2 refused (the host's queue holds `max_queue` entries and `bounded` is set). `robots`,
-- when not empty, is the host's robots.txt request: queued first if the host is new, and
-- the host sends nothing else until its rules are known (see claim).
local function offer(host, fp, shard, entry, robots, bounded, max_queue, per_host)
  local q = K .. ':q:' .. host
  -- An engine sends a host's robots.txt request with the first URL of the host it offers,
  -- seen or not, so no host is queued without one.
  if robots ~= '' and redis.call('HSETNX', K .. ':host:' .. host, 'robots', 'pending') == 1 then
    redis.call('RPUSH', q, robots)
    redis.call('INCR', K .. ':queued')
    reschedule(host, per_host)
  end
  local seen = K .. ':seen:' .. shard
  if redis.call('SISMEMBER', seen, fp) == 1 then
    return 1
  end
  if bounded == 1 and redis.call('LLEN', q) >= max_queue then
    return 2
  end
  redis.call('SADD', seen, fp)
  redis.call('RPUSH', q, entry)
  redis.call('INCR', K .. ':queued')
  reschedule(host, per_host)
  -- New work reopens a crawl that was done (a task added to engines that serve).
  redis.call('DEL', K .. ':done')
  return 0
end

-- Offers `n` URLs given from ARGV[b] on, five arguments each; returns their codes.
local function offer_all(b, n, bounded, max_queue, per_host)
  local out = {}
  for i = 0, n - 1 do
    local a = b + i * 5
    out[#out + 1] = offer(ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4],
      bounded, max_queue, per_host)
  end
  return out
end
