//! kafka-tasks: the background-task subsystem of a Kafka control plane, wire-compatible with
//! Huawei Cloud DMS for Kafka's background task management API.
//!
//! - [`domain`]: identifiers, times, task states, operations and their rules;
//! - [`http`]: the API, one module per resource;
//! - [`storage`]: the storage traits and one implementation per database engine;
//! - [`engine`]: the workers that run tasks;
//! - [`auth`]: who is calling;
//! - [`control`]: test control (`serve --test-control`): fault rules, the movable clock, reset;
//! - [`server`] and [`cli`]: how the pieces are started;
//! - [`client`]: the CLI client of the API (signed with [`auth::signature`]).

pub mod auth;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod control;
pub mod domain;
pub mod engine;
pub mod executor;
pub mod http;
pub mod kafka;
pub mod log_json;
pub mod log_limit;
pub mod private_files;
pub mod server;
pub mod storage;
pub mod telemetry;
pub mod tls;
pub mod wire;
