//! What kafka-tasks needs of its platform, shared by the server, the CLI client, the store and
//! the load generator: TLS (rustls on ring, for servers and clients), files only their owner may
//! read, and log lines limited per key (`limited!`).

pub mod log_limit;
pub mod private_files;
pub mod tls;
