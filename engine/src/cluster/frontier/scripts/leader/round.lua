-- round(K; engine, addr, ttl_ms, state, dispatched, max)
-- One engine's round, once a second, in one call: its heartbeat (listed among the crawl's
-- engines with its admin address `addr` for `ttl` ms, as common/src/registry.rs lists
-- nodes), its report (role, `state`, requests `dispatched`) and the mode an operator asked
-- of it, the leader lease taken or renewed (see `elect`), and, when it leads, the leader's
-- chores: up to `max` expired leases back to their queues, due retries back to theirs, and
-- the end decided. Returns {epoch (0: another engine leads), the mode asked ('' for none),
-- leases reaped, done (1 or 0)}.
local engine = ARGV[1]
local ttl = tonumber(ARGV[3])
local max = tonumber(ARGV[6])
redis.call('ZADD', KEY.engines, now_ms() + ttl, engine)
redis.call('HSET', KEY.node .. engine, 'addr', ARGV[2])
redis.call('PEXPIRE', KEY.node .. engine, ttl)
local epoch = elect(engine, ttl)
local role = 'follower'
if epoch > 0 then role = 'leader' end
local report = KEY.engine .. engine
redis.call('HSET', report, 'role', role, 'state', ARGV[4], 'dispatched', ARGV[5])
redis.call('PEXPIRE', report, ttl)
local wanted = redis.call('HGET', report, 'wanted') or ''
local reaped = 0
local done = 0
if epoch > 0 then
  reaped = reap_leases(max)
  promote_due(max)
  done = finish_crawl()
end
return {epoch, wanted, reaped, done}
