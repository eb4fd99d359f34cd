-- The frontier scripts' library, part 2 of 5: a host's lanes of requests, tasks' states and
-- budgets as the claim sees them, and a host's place in the ready set.

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
