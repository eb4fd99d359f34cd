//! The crawl's politeness limits, kept once in Redis where every script reads them, and the
//! version of the key layout they are kept in.

use super::*;

impl RedisFrontier {
    /// Writes this engine's politeness limits (the crawl's, as adopted: every engine writes
    /// the same) where the frontier scripts read them, and the key layout they are kept in,
    /// unless the crawl's keys were laid out by a later version: returns the layout found
    /// then, `None` when the limits were written (a crawl of layout 1 moves to this one).
    pub async fn keep_limits(&mut self) -> Result<Option<u64>, ClusterError> {
        let politeness = &self.config.politeness;
        let found: u64 = redis::Script::new(
            "local found = tonumber(redis.call('GET', KEYS[2]) or '1')
             if found > tonumber(ARGV[1]) then return found end
             redis.call('HSET', KEYS[1], 'per_host', ARGV[2], 'max_queue_per_host', ARGV[3],
               'delay_ms', ARGV[4], 'max_backoff_ms', ARGV[5], 'max_pages_per_host', ARGV[6])
             redis.call('SET', KEYS[2], ARGV[1])
             return 0",
        )
        .key(self.keys().limits())
        .key(self.keys().schema())
        .arg(LAYOUT)
        .arg(politeness.per_host.max(1))
        .arg(politeness.max_queue_per_host)
        .arg(politeness.delay.as_millis() as u64)
        .arg(politeness.max_backoff.as_millis() as u64)
        .arg(politeness.max_pages_per_host.unwrap_or(0))
        .invoke_async(&mut self.conn)
        .await
        .map_err(redis_err("keep the crawl's limits"))?;
        Ok((found > 0).then_some(found))
    }
}
