//! Spinneret's test material: a deterministic generated site served over real HTTP, which
//! counts the hits on every path so tests can check what a crawl fetched.

pub mod hostile;
pub mod quotes;
pub mod site;

pub use site::{Site, TestSite};
