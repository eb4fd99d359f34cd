//! End-to-end tests: the real binaries, on free loopback ports, against the real test site.
//!
//! The binaries are found next to this test executable; `make test` builds them first.

mod admin;
mod cli;
mod cluster;
mod cluster_harness;
mod config;
mod dashboard;
mod deaths;
mod deployment;
mod exports;
mod faults;
mod hostile;
mod items;
mod operate;
mod pg;
mod pipeline;
mod render;
mod runs;
mod security;
mod spiders;
mod warc;
