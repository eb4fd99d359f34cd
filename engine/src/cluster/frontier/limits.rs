//! The crawl's politeness limits, kept once in Redis where every script reads them, and the
//! version of the key layout they are kept in. The engine that stores the crawl's settings
//! writes them in the same step (see `settings::adopt`); a crawl stored by an engine before
//! them (layout 1) has them filled in here from the settings every engine adopted.

use super::*;

impl RedisFrontier {
    /// Fills in the politeness limits the crawl's keys lack from this engine's (the crawl's,
    /// as adopted), never changing one that is there, and records the key layout, unless
    /// the crawl's keys were laid out by a later version: returns the layout found then,
    /// `None` otherwise (a crawl of layout 1 moves to this one).
    pub async fn keep_limits(&mut self) -> Result<Option<u64>, ClusterError> {
        let politeness = &self.config.politeness;
        let found: u64 = redis::Script::new(
            "local found = tonumber(redis.call('GET', KEYS[2]) or '1')
             if found > tonumber(ARGV[1]) then return found end
             local names = {'per_host', 'max_queue_per_host', 'delay_ms', 'max_backoff_ms',
               'max_pages_per_host'}
             for i, name in ipairs(names) do
               redis.call('HSETNX', KEYS[1], name, ARGV[i + 1])
             end
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
