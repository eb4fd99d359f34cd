-- tick(K; epoch, task, tick, overlap, run, n, then n x (host, fp, shard, entry, robots, run,
--      bounded, task))
-- Leader only: fires tick `tick` (Unix seconds) of scheduled task `task`, once however many
-- engines lead in turn: the hash `ticks` keeps each task's last tick fired, and a tick not
-- after it is refused. The task's current run is in its state ("STATE#RUN" in
-- `task_states`); while that run is open (running or paused, with pages in `run_open`), the
-- tick is skipped (`overlap` = "skip") or the run is stopped and the new one starts at once
-- ("replace"; its end is kept in `run_ends`). A new run is run `run`, which the engine read
-- as the next one: its state becomes "running#RUN" and its seeds (given with that run) are
-- queued, all at once. Returns {code, last tick fired or -1}: code -1 when `epoch` is not the
-- current leader's, 0 when the tick was fired before, 1 when it was skipped, 2 when run `run`
-- started, 3 when the current run is not `run` - 1 (read again), 4 when the task is closed,
-- 5 when run `run` started and replaced the run that was open. A new run deletes the seen
-- set of the run before it.
if not is_leader(ARGV[1]) then return {-1, -1} end
local task = ARGV[2]
local tick = tonumber(ARGV[3])
local last = tonumber(redis.call('HGET', KEY.ticks, task) or '-1')
if tick <= last then return {0, last} end
local state = redis.call('HGET', KEY.task_states, task) or 'waiting#0'
local name, run = string.match(state, '^(%a+)#(%d+)$')
if not name then name, run = state, '0' end
run = tonumber(run)
if name == 'closed' then return {4, last} end
local new = tonumber(ARGV[5])
if new ~= run + 1 then return {3, last} end
redis.call('HSET', KEY.ticks, task, tick)
local open = (name == 'running' or name == 'paused')
  and tonumber(redis.call('HGET', KEY.run_open, run .. ':' .. task) or '0') > 0
if open then
  if ARGV[4] ~= 'replace' then return {1, last} end
  redis.call('HSET', KEY.run_ends, task, 'stopped#' .. run)
end
redis.call('HSET', KEY.task_states, task, 'running#' .. new)
-- What a paused or capped run left queued is claimed again, to be dropped by the engines.
reschedule_task(task)
if run > 0 then forget_run(run .. ':' .. task) end
redis.call('INCR', KEY.tasks_version)
-- A crawl whose only task is scheduled has work from its first run on: it may be done
-- between runs (and end, once nothing is scheduled any more). See finish.lua.
redis.call('SET', KEY.opened, '1')
offer_all(0, tonumber(ARGV[6]), 7)
if open then return {5, last} end
return {2, last}
