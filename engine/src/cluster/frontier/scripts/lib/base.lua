-- The frontier scripts' library, part 1 of 5: time, the leader lease's holder, the crawl's
-- limits and robots.txt entries. Every script runs after `K` (KEYS[1], the crawl's key
-- prefix "{spinneret:NAME}": every key of a crawl carries its hash tag, so one crawl lives
-- on one Redis Cluster slot), the table `KEY` of the crawl's keys (engine/src/cluster/keys.rs:
-- a key is named `KEY.leader`, or `KEY.host .. host` in a family) and the five parts of
-- lib/, in order: base, lanes, offer, leases, leader.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

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
