//! Integration tests: the real server over real HTTP, each test on its own fresh database.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that meets the unexpected should stop there: a panic is its failure"
)]

// `macro_use`: its macros (`per_engine!`, `on_postgres!`, `on_sqlite!`) are in scope in every module.
#[macro_use]
extern crate kafka_tasks_testkit as kit;

mod attacks;
mod attacks_cluster;
mod attacks_control;
mod attacks_signing;
mod audit;
mod auth;
mod bad_input;
mod clusters;
mod connected;
mod connected_reassign;
mod connected_rolling;
mod control;
mod engine;
mod events;
mod executors;
mod fidelity;
mod helpers;
mod hygiene;
mod instances;
mod isolation;
mod openapi;
mod provider_reads;
mod retention;
mod scheduled;
mod secrets;
mod tasks;

use kit::pg;
