-- elect(K; engine, ttl_ms)
-- Takes or renews the crawl's leader lease for `engine`. Returns the leader's epoch when
-- `engine` holds the lease now (a new epoch when it just took it), 0 when another engine
-- does. An engine that paused past its lease finds another leader, or a new epoch of its own:
-- every leader-only write carries the epoch and is refused when it is stale (fencing).
local engine = ARGV[1]
local ttl = tonumber(ARGV[2])
local who, epoch = leader()
if who then
  if who == engine then
    redis.call('PEXPIRE', K .. ':leader', ttl)
    return tonumber(epoch)
  end
  return 0
end
local fresh = redis.call('INCR', K .. ':epoch')
redis.call('SET', K .. ':leader', engine .. ':' .. fresh, 'PX', ttl)
return fresh
