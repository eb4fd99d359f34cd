-- promote(K; epoch, per_host, max)
-- Leader only: moves up to `max` deferred requests whose back-off is over to the front of
-- their host's queue. Returns how many, or -1 when `epoch` is not the current leader's.
if not is_leader(ARGV[1]) then return -1 end
local per_host = tonumber(ARGV[2])
local due = take_due(K .. ':deferred', tonumber(ARGV[3]))
for _, retry in ipairs(due) do
  requeue_front(retry[1], retry[2], per_host)
end
return #due
