//! Spinneret's benchmark: a site of realistic, dense pages served from memory, and the
//! measurements `make bench` reports.

pub mod pages;
pub mod server;
