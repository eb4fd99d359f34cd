-- tasks(K; epoch, per_host, max_queue, n, then n x (kind, a, b), m, then m x (host, fp,
--       shard, entry, robots, run, bounded))
-- Leader only: records operators' task changes for every engine, in order (kind 'A': task
-- record `a` added; kind 'S': task `a` set to state `b`, "STATE#RUN" for a scheduled run,
-- unless the task is in a later run already: then only a close counts, for that run), and
-- queues the seeds of the tasks added, all at once: a seed is never queued before its task
-- is recorded. An engine that claims one before it has read the task's news holds it back
-- until it has (see `Tasks::hold`). Returns 1, or -1 when `epoch` is not the current
-- leader's (nothing is recorded).
if not is_leader(ARGV[1]) then return -1 end
local per_host = tonumber(ARGV[2])
local max_queue = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local i = 5
for _ = 1, n do
  if ARGV[i] == 'A' then
    redis.call('RPUSH', K .. ':tasks', ARGV[i + 1])
  else
    -- A change made for an earlier run than the task's current one (the leader had not yet
    -- read of the newer run) must not turn the run back: it is dropped.
    local stored = redis.call('HGET', K .. ':task_states', ARGV[i + 1]) or ''
    local current = tonumber(string.match(stored, '#(%d+)$') or '0')
    local run = tonumber(string.match(ARGV[i + 2], '#(%d+)$') or '0')
    if run >= current then
      redis.call('HSET', K .. ':task_states', ARGV[i + 1], ARGV[i + 2])
    elseif string.match(ARGV[i + 2], '^closed') then
      -- A close is for every run.
      redis.call('HSET', K .. ':task_states', ARGV[i + 1], 'closed#' .. current)
    end
    if string.match(ARGV[i + 2], '^closed') then
      -- A crawl of scheduled tasks closed before their first tick may end (see finish.lua).
      redis.call('SET', K .. ':opened', '1')
    end
  end
  i = i + 3
end
if n > 0 then
  -- The version moves with the changes: an engine that sees it move finds them.
  redis.call('INCR', K .. ':tasks_version')
end
if tonumber(ARGV[i]) > 0 then
  -- An added task's seeds are work, in a crawl whose own task waits for its first tick too.
  redis.call('SET', K .. ':opened', '1')
end
offer_all(i + 1, tonumber(ARGV[i]), 0, max_queue, per_host)
return 1
