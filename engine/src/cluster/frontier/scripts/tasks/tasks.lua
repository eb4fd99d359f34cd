-- tasks(K; epoch, key, answer, keep_secs, tasks, n, then n x (kind, a, b), m, then m x
--       (host, fp, shard, entry, robots, run, bounded, task))
-- Leader only: records operators' task changes for every engine, in order (kind 'A': task
-- record `a` added; kind 'S': task `a` set to state `b`, "STATE#RUN" for a scheduled run,
-- unless the task is in a later run already: then only a close counts, for that run), and
-- queues the seeds of the tasks added, all at once: a seed is never queued before its task
-- is recorded. An engine that claims one before it has read the task's news holds it back
-- until it has (see `Tasks::hold`). With `key` (an idempotency key's Redis key), `answer` is
-- kept under it for `keep_secs` in the same step, and a key that holds an answer already
-- means the change was recorded before: nothing is recorded again. With `tasks` >= 0, the
-- change is recorded only when that many tasks are recorded (the leader has read them all).
-- Returns 1 recorded, 2 recorded before, -1 when `epoch` is not the current leader's, -2
-- when `tasks` does not match (nothing is recorded either way).
if not is_leader(ARGV[1]) then return -1 end
local key = ARGV[2]
if key ~= '' and redis.call('EXISTS', key) == 1 then return 2 end
local expected = tonumber(ARGV[5])
if expected >= 0 and redis.call('LLEN', KEY.tasks) ~= expected then return -2 end
local n = tonumber(ARGV[6])
local i = 7
for _ = 1, n do
  if ARGV[i] == 'A' then
    redis.call('RPUSH', KEY.tasks, ARGV[i + 1])
  else
    -- A change made for an earlier run than the task's current one (the leader had not yet
    -- read of the newer run) must not turn the run back: it is dropped.
    local stored = redis.call('HGET', KEY.task_states, ARGV[i + 1]) or ''
    local current = tonumber(string.match(stored, '#(%d+)$') or '0')
    local run = tonumber(string.match(ARGV[i + 2], '#(%d+)$') or '0')
    if run >= current then
      redis.call('HSET', KEY.task_states, ARGV[i + 1], ARGV[i + 2])
    elseif string.match(ARGV[i + 2], '^closed') then
      -- A close is for every run.
      redis.call('HSET', KEY.task_states, ARGV[i + 1], 'closed#' .. current)
    end
    if string.match(ARGV[i + 2], '^closed') then
      -- A crawl of scheduled tasks closed before their first tick may end (see finish.lua).
      redis.call('SET', KEY.opened, '1')
    end
    if not paused(ARGV[i + 1]) then
      -- Resumed (or ended: its requests are claimed and dropped): its hosts are ready again.
      reschedule_task(ARGV[i + 1])
    end
  end
  i = i + 3
end
if n > 0 then
  -- The version moves with the changes: an engine that sees it move finds them.
  redis.call('INCR', KEY.tasks_version)
end
if tonumber(ARGV[i]) > 0 then
  -- An added task's seeds are work, in a crawl whose own task waits for its first tick too.
  redis.call('SET', KEY.opened, '1')
end
offer_all(0, tonumber(ARGV[i]), i + 1)
if key ~= '' then
  redis.call('SET', key, ARGV[3], 'EX', tonumber(ARGV[4]))
end
return 1
