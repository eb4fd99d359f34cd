-- reap(K; max)
-- Returns up to `max` expired leases' requests to the front of their host's queue (their
-- engine died or lost touch); returns how many.
return reap_leases(tonumber(ARGV[1]))
