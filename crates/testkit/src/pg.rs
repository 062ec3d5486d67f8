//! A fresh PostgreSQL database for one test, dropped when the value is dropped. The server is
//! `KAFKA_TASKS_TEST_PG` (default `postgres://postgres@127.0.0.1:5432`). A test that needs
//! PostgreSQL uses [`FreshDatabase::create_or_skip`] (or runs inside
//! [`per_engine!`](crate::per_engine), which checks first): it skips (saying so) when PostgreSQL
//! is down outside CI, and fails in CI (`CI=true`), where `scripts/test.sh` has started it.
//! [`FreshDatabase::create`] is for callers that have checked.

pub fn server() -> String {
    std::env::var("KAFKA_TASKS_TEST_PG")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432".into())
}

pub struct FreshDatabase {
    pub url: String,
    server: String,
    name: String,
}

/// Whether this run is CI's, where every dependency must be up and nothing may skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether PostgreSQL answers; when it does not and this is not CI, says the test is skipped
/// (in CI it answers `true`, and the test fails where it connects).
pub async fn reachable_or_skip() -> bool {
    let server = server();
    let reachable = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio_postgres::connect(&format!("{server}/postgres"), tokio_postgres::NoTls),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if !reachable && !in_ci() {
        eprintln!("skipped: PostgreSQL not reachable at {server} (in CI, CI=true, this fails)");
        return false;
    }
    true
}

impl FreshDatabase {
    /// A fresh database, or `None` when PostgreSQL does not answer and this is not CI (the
    /// caller returns early: the test passes, having printed that it skipped).
    pub async fn create_or_skip(prefix: &str) -> Option<Self> {
        if !reachable_or_skip().await {
            return None;
        }
        Some(Self::create(prefix).await)
    }

    pub async fn create(prefix: &str) -> Self {
        let server = server();
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let (client, conn) = tokio_postgres::connect(&format!("{server}/postgres"), tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL is up");
        tokio::spawn(conn);
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("database created");
        FreshDatabase { url: format!("{server}/{name}"), server, name }
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Its own runtime: the test's may be shutting down.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&format!("{server}/postgres"), tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                }
            });
        })
        .join();
    }
}
