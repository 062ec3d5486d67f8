//! A fresh PostgreSQL database for one test, dropped when the value is dropped. The server is
//! `KAFKA_TASKS_TEST_PG` (default `postgres://postgres@127.0.0.1:5432`); tests that use it do
//! not skip when it is down, they fail.

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

impl FreshDatabase {
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
