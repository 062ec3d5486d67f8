//! The database engine a test runs on. A test written once inside [`per_engine!`](crate::per_engine)
//! runs as two tests named after the engine (`name::sqlite`, `name::postgres`), so that a failure
//! says which engine failed. The PostgreSQL one says "skipped: PostgreSQL not reachable" and
//! passes when PostgreSQL does not answer outside CI, and fails in CI (`CI=true`).

use std::future::Future;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

tokio::task_local! {
    static ENGINE: Engine;
}

/// The engine of the running test: the one its [`per_engine!`](crate::per_engine) variant (or
/// [`run`]) chose; SQLite for a test that chose none.
pub fn current() -> Engine {
    ENGINE.try_with(|e| *e).unwrap_or(Engine::Sqlite)
}

/// Runs the test `body` on `engine` (see [`current`]); on PostgreSQL, skips (returns at once,
/// having said so) when it is not reachable outside CI.
pub async fn run(engine: Engine, body: impl Future<Output = ()>) {
    if engine == Engine::Postgres && !super::pg::reachable_or_skip().await {
        return;
    }
    ENGINE.scope(engine, body).await
}

/// One test, run once per engine as two tests named after the engine (`name::sqlite`,
/// `name::postgres`). Its attributes (`#[tokio::test]`, with any flavor, and its doc) go on both.
#[macro_export]
macro_rules! per_engine {
    ($(#[$m:meta])* async fn $name:ident() $body:block) => {
        $crate::on_engines!([sqlite Sqlite, postgres Postgres] { $(#[$m])* } $name $body);
    };
}

/// A test whose subject is not the storage engine (connected mode against the real Kafka cluster,
/// an attack on signing), run on SQLite alone as one test named `name::sqlite`: running it again
/// on PostgreSQL would repeat minutes of cluster work to test the same code above the store.
#[macro_export]
macro_rules! on_sqlite {
    ($(#[$m:meta])* async fn $name:ident() $body:block) => {
        $crate::on_engines!([sqlite Sqlite] { $(#[$m])* } $name $body);
    };
}

/// A test for PostgreSQL alone (several processes on one database, an outage of the server), as
/// one test named `name::postgres`; it skips as [`run`] says.
#[macro_export]
macro_rules! on_postgres {
    ($(#[$m:meta])* async fn $name:ident() $body:block) => {
        $crate::on_engines!([postgres Postgres] { $(#[$m])* } $name $body);
    };
}

/// What the three macros above share: a module named after the test holding one test per engine
/// listed (`case Engine`), each with the test's attributes, named after its engine and run
/// through [`run`].
#[doc(hidden)]
#[macro_export]
macro_rules! on_engines {
    ([$($case:ident $engine:ident),+] $attrs:tt $name:ident $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $($crate::on_engines!(@case $case $engine $attrs $body);)+
        }
    };
    (@case $case:ident $engine:ident { $(#[$m:meta])* } $body:block) => {
        $(#[$m])*
        async fn $case() {
            $crate::engine::run($crate::engine::Engine::$engine, async $body).await
        }
    };
}
