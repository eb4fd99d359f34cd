//! What a crawl's Redis says of it: its counts and end, and deleting it (`--fresh`).

use super::*;

impl RedisFrontier {
    /// Requests deferred (waiting out a back-off).
    pub async fn deferred(&mut self) -> Result<u64, ClusterError> {
        redis::cmd("ZCARD")
            .arg(self.keys().deferred())
            .query_async(&mut self.conn)
            .await
            .map_err(redis_err("count deferred"))
    }

    /// Requests queued (not leased).
    pub async fn queued(&mut self) -> Result<u64, ClusterError> {
        let n: Option<u64> = redis::cmd("GET")
            .arg(self.keys().queued())
            .query_async(&mut self.conn)
            .await
            .map_err(redis_err("count queued"))?;
        Ok(n.unwrap_or(0))
    }

    /// Requests leased and not completed.
    pub async fn leased(&mut self) -> Result<u64, ClusterError> {
        redis::cmd("ZCARD")
            .arg(self.keys().leases())
            .query_async(&mut self.conn)
            .await
            .map_err(redis_err("count leases"))
    }

    /// Whether the leader marked the crawl done.
    pub async fn is_done(&mut self) -> Result<bool, ClusterError> {
        redis::cmd("EXISTS")
            .arg(self.keys().done())
            .query_async(&mut self.conn)
            .await
            .map_err(redis_err("check the end"))
    }

    /// Requests queued, leased and deferred, whether the crawl is done, the URLs seen and
    /// the tasks' version, read together in one call.
    pub async fn counts(&mut self) -> Result<Counts, ClusterError> {
        Ok(self.status().await?.0)
    }

    /// The crawl's figures (see [`Counts`]) and each task's requests queued, in one call.
    pub async fn status(&mut self) -> Result<(Counts, Vec<(String, u64)>), ClusterError> {
        let answer: Vec<redis::Value> = self
            .scripts
            .status
            .key(&self.prefix)
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("count the frontier"))?;
        let bad = |_| ClusterError::Answer("status");
        let mut numbers = [0u64; 6];
        for (n, value) in numbers.iter_mut().zip(&answer) {
            *n = redis::from_redis_value(value.clone()).map_err(bad)?;
        }
        if answer.len() < 6 {
            return Err(ClusterError::Answer("status"));
        }
        let [queued, leased, deferred, done, seen, tasks_version] = numbers;
        let per_task = answer[6..]
            .chunks(2)
            .map(|pair| match pair {
                [task, n] => Ok((
                    redis::from_redis_value(task.clone()).map_err(bad)?,
                    redis::from_redis_value(n.clone()).map_err(bad)?,
                )),
                _ => Err(ClusterError::Answer("status")),
            })
            .collect::<Result<_, _>>()?;
        let counts = Counts {
            queued,
            leased,
            deferred,
            done: done == 1,
            seen,
            tasks_version,
        };
        Ok((counts, per_task))
    }

    /// Deletes every key of the crawl (`--fresh`), so that its name can be used again. The
    /// keys share one hash tag, so on a Redis Cluster they all sit on the node the script
    /// runs on; the pattern is the tag itself, escaped, so it matches no other crawl's.
    pub async fn delete_crawl(&mut self) -> Result<u64, ClusterError> {
        let script = Script::new(
            "local found = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', 1000)
             if #found[2] > 0 then redis.call('UNLINK', unpack(found[2])) end
             return {found[1], #found[2]}",
        );
        let pattern = format!("{}*", crate::cluster::name::glob_escape(&self.prefix));
        let mut cursor = "0".to_owned();
        let mut deleted = 0;
        loop {
            let (next, n): (String, u64) = script
                .key(&self.prefix)
                .arg(&cursor)
                .arg(&pattern)
                .invoke_async(&mut self.conn)
                .await
                .map_err(redis_err("delete the crawl's keys"))?;
            deleted += n;
            if next == "0" {
                return Ok(deleted);
            }
            cursor = next;
        }
    }
}
