-- reserve(K; id, budget, max)
-- Takes one page of budget `budget` (a task's run: "TASK#RUN") for lease `id`, whose page is
-- about to be sent, when fewer than `max` are taken: the hash `pages` counts each budget's
-- pages fetched or in flight across every engine, as one engine counts its task's. The lease
-- keeps the budget's name: a request that is not done for good gives its page back (see
-- give_back_page), a final completion keeps it. Returns 1 taken, 0 the budget is spent, -1
-- the lease is gone (reaped: its request is another's now). A spent budget is marked in
-- the hash `spent` (the task's run), so that claims leave the task's requests queued.
local lk = KEY.lease .. ARGV[1]
if redis.call('EXISTS', lk) == 0 then return -1 end
if redis.call('HEXISTS', lk, 'budget') == 1 then return 1 end
local taken = tonumber(redis.call('HGET', KEY.pages, ARGV[2]) or '0')
if taken >= tonumber(ARGV[3]) then
  local task, run = string.match(ARGV[2], '^(.*)#(%d+)$')
  if task then redis.call('HSET', KEY.spent, task, run) end
  return 0
end
redis.call('HINCRBY', KEY.pages, ARGV[2], 1)
redis.call('HSET', lk, 'budget', ARGV[2])
return 1
