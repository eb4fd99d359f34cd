-- status(K)
-- What an engine reads of the crawl on each of its ticks, in one call: requests queued,
-- leased and deferred, whether the crawl is done, the URLs its seen sets took in, and the
-- version of its tasks (an engine reads the task news only when it moved).
return {
  tonumber(redis.call('GET', K .. ':queued') or '0'),
  redis.call('ZCARD', K .. ':leases'),
  redis.call('ZCARD', K .. ':deferred'),
  redis.call('EXISTS', K .. ':done'),
  tonumber(redis.call('GET', K .. ':seen_count') or '0'),
  tonumber(redis.call('GET', K .. ':tasks_version') or '0'),
}
