//! The leader's scripts: the leader lease (elect, resign, the engines' round), reaping
//! expired leases, promoting due retries, and deciding the crawl's end.

use super::*;

impl RedisFrontier {
    /// Returns up to `max` expired leases' requests to the front of their queues.
    pub async fn reap(&mut self, max: usize) -> Result<usize, ClusterError> {
        self.scripts
            .reap
            .key(&self.prefix)
            .arg(max)
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("reap"))
    }

    /// One engine's round (see `round.lua`): the heartbeat and report of engine `engine`
    /// (admin address `addr`, mode `state`, requests `dispatched`) for `ttl`, the leader
    /// lease taken or renewed, and the leader's chores when it leads, in one call.
    pub async fn round(
        &mut self,
        engine: &str,
        addr: &str,
        ttl: Duration,
        (state, dispatched): (&str, u64),
        max: usize,
    ) -> Result<Round, ClusterError> {
        let (epoch, wanted, reaped, done): (u64, String, usize, u8) = self
            .scripts
            .round
            .key(&self.prefix)
            .arg(engine)
            .arg(addr)
            .arg(ttl.as_millis() as u64)
            .arg(state)
            .arg(dispatched)
            .arg(max)
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("engine round"))?;
        Ok(Round {
            epoch: (epoch > 0).then_some(epoch),
            wanted: (!wanted.is_empty()).then_some(wanted),
            reaped,
            done: done == 1,
        })
    }

    /// Takes or renews the crawl's leader lease for `engine`, for `ttl`: the leader's epoch
    /// when `engine` holds it now, `None` when another engine does.
    pub async fn elect(
        &mut self,
        engine: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, ClusterError> {
        let epoch: u64 = self
            .scripts
            .elect
            .key(&self.prefix)
            .arg(engine)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("elect"))?;
        Ok((epoch > 0).then_some(epoch))
    }

    /// Gives up the leader lease when `engine` holds it (a clean exit), so that another engine
    /// takes over at once instead of after the lease's length.
    pub async fn resign(&mut self, engine: &str) -> Result<(), ClusterError> {
        Script::new(
            "local held = redis.call('GET', KEYS[1])
             if held and string.sub(held, 1, #ARGV[1] + 1) == ARGV[1] .. ':' then
               redis.call('DEL', KEYS[1])
             end
             return 1",
        )
        .key(self.keys().leader())
        .arg(engine)
        .invoke_async::<i64>(&mut self.conn)
        .await
        .map(drop)
        .map_err(redis_err("resign"))
    }

    /// Leader only: moves up to `max` deferred requests whose back-off is over to the front
    /// of their queues; `None` when `epoch` is stale (another engine leads).
    pub async fn promote(&mut self, epoch: u64, max: usize) -> Result<Option<usize>, ClusterError> {
        let moved: i64 = self
            .scripts
            .promote
            .key(&self.prefix)
            .arg(epoch)
            .arg(max)
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("promote"))?;
        Ok(usize::try_from(moved).ok())
    }

    /// Leader only: marks the crawl done when nothing is queued, leased or deferred. `Some`
    /// says whether it is done; `None` that `epoch` is stale.
    pub async fn finish(&mut self, epoch: u64) -> Result<Option<bool>, ClusterError> {
        let answer: i64 = self
            .scripts
            .finish
            .key(&self.prefix)
            .arg(epoch)
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("finish"))?;
        Ok((answer >= 0).then_some(answer == 1))
    }
}
