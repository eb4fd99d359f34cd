-- status(K)
-- What an engine reads of the crawl on each of its ticks, in one call: requests queued,
-- leased and deferred, whether the crawl is done, the URLs its seen sets took in, the
-- version of its tasks (an engine reads the task news only when it moved), then each task's
-- requests queued, as task, count pairs.
local out = {
  tonumber(redis.call('GET', KEY.queued) or '0'),
  redis.call('ZCARD', KEY.leases),
  redis.call('ZCARD', KEY.deferred),
  redis.call('EXISTS', KEY.done),
  tonumber(redis.call('GET', KEY.seen_count) or '0'),
  tonumber(redis.call('GET', KEY.tasks_version) or '0'),
}
local per_task = redis.call('HGETALL', KEY.task_queued)
for i = 1, #per_task, 2 do
  out[#out + 1] = per_task[i]
  out[#out + 1] = tonumber(per_task[i + 1])
end
return out
