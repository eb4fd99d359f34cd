//! Cluster mode's shared state in Redis: one frontier that every engine of a crawl draws from.
//!
//! Work in progress (issue #13): the Redis frontier's primitives are here and tested against
//! a real `redis-server`; the crawl loop does not use them yet.

mod frontier;

pub use frontier::{
    Again, Claimed, ClusterError, Finished, NewUrl, Offer, RedisFrontier, RedisFrontierConfig,
};
