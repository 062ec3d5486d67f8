//! The test kit, a dev-only crate every integration-test binary uses (as `kit`): the engine a test
//! runs on ([`engine`], with [`per_engine!`](crate::per_engine)), fresh PostgreSQL databases
//! ([`pg`]), the server as a child process and a signed HTTP client ([`serve`]), the one request
//! signer ([`sign`]), and the crash and cluster suites' event log, invariants and random numbers.
//! Each binary uses part of it.

pub mod engine;
pub mod event_log;
pub mod invariants;
pub mod pg;
pub mod rng;
pub mod serve;
pub mod sign;
