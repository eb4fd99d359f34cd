-- elect(K; engine, ttl_ms)
-- Takes or renews the crawl's leader lease for `engine`. Returns the leader's epoch when
-- `engine` holds the lease now (a new epoch when it just took it), 0 when another engine
-- does. An engine that paused past its lease finds another leader, or a new epoch of its own:
-- every leader-only write carries the epoch and is refused when it is stale (fencing).
local engine = ARGV[1]
local ttl = tonumber(ARGV[2])
local held = redis.call('GET', K .. ':leader')
if held then
  local sep = string.find(held, ':', 1, true)
  local who = string.sub(held, 1, sep - 1)
  if who == engine then
    redis.call('PEXPIRE', K .. ':leader', ttl)
    return tonumber(string.sub(held, sep + 1))
  end
  return 0
end
local epoch = redis.call('INCR', K .. ':epoch')
redis.call('SET', K .. ':leader', engine .. ':' .. epoch, 'PX', ttl)
return epoch
