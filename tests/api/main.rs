//! Integration tests: the real server over real HTTP, each test on its own fresh database.

mod auth;
mod bad_input;
mod engine;
mod helpers;
mod instances;
mod scheduled;
mod tasks;
