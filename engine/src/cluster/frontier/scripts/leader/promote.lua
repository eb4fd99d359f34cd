-- promote(K; epoch, max)
-- Leader only: moves up to `max` deferred requests whose back-off is over to the front of
-- their host's queue. Returns how many, or -1 when `epoch` is not the current leader's.
if not is_leader(ARGV[1]) then return -1 end
return promote_due(tonumber(ARGV[2]))
