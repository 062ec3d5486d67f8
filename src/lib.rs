//! kafka-tasks: the background-task subsystem of a Kafka control plane, wire-compatible with
//! Huawei Cloud DMS for Kafka's background task management API.
//!
//! This crate is the service and its command line; the layers it stands on are crates of their
//! own (`crates/`), re-exported here under the names the modules use:
//! - [`domain`] (`kafka-tasks-domain`): identifiers, times, task states, operations and their rules;
//! - [`wire`] (`kafka-tasks-wire`): every request and answer as a type, and the request signatures;
//! - [`storage`] (`kafka-tasks-storage`): the storage traits and one implementation per engine;
//! - [`client`] (`kafka-tasks-client`): the CLI's client of the API;
//! - [`tls`], [`private_files`] and [`log_limit`] (`kafka-tasks-platform`).
//!
//! Its own modules:
//! - [`http`]: the API, one module per resource;
//! - [`engine`]: the workers that run tasks;
//! - [`auth`]: who is calling;
//! - [`control`]: test control (`serve --test-control`): fault rules, the movable clock, reset;
//! - [`server`] and [`cli`]: how the pieces are started;

pub mod auth;
pub mod cli;
pub mod config;
pub mod control;
pub mod engine;
pub mod executor;
pub mod http;
pub mod kafka;
pub mod log_json;
pub mod server;
pub mod telemetry;

// The layers below, each a crate of its own (crates/), under the names the server's modules use.
pub use kafka_tasks_client as client;
pub use kafka_tasks_domain as domain;
pub use kafka_tasks_platform::{limited, log_limit, private_files, tls};
pub use kafka_tasks_storage as storage;
pub use kafka_tasks_wire as wire;
