-- runs(K; epoch, then task names)
-- Leader only: ends the current run of each named scheduled task that is running or paused
-- with nothing of it queued, leased or deferred (its count in `run_open` is gone), or, when
-- its page budget is spent, nothing but what its lanes hold (left there, unsent, until the
-- next run): its state becomes "done#RUN", for every engine. Returns how many runs ended,
-- or -1 when `epoch` is not the current leader's.
if not is_leader(ARGV[1]) then return -1 end
local ended = 0
for i = 2, #ARGV do
  local task = ARGV[i]
  local state = redis.call('HGET', KEY.task_states, task) or ''
  local name, run = string.match(state, '^(%a+)#(%d+)$')
  if (name == 'running' or name == 'paused') and tonumber(run) > 0 then
    local open = tonumber(redis.call('HGET', KEY.run_open, run .. ':' .. task) or '0')
    local capped = open > 0 and spent(task)
      and open <= tonumber(redis.call('HGET', KEY.task_queued, task) or '0')
    if open == 0 or capped then
      redis.call('HSET', KEY.task_states, task, 'done#' .. run)
      ended = ended + 1
    end
  end
end
if ended > 0 then
  redis.call('INCR', KEY.tasks_version)
end
return ended
