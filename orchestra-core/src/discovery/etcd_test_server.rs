//! [`EtcdTestServer`]: a throwaway single-member etcd for tests (features
//! `etcd` and `test-utils`).

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// How long etcd may take to answer its health check after starting.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// An `etcd` process of the test's own: free loopback ports, its data in a
/// fresh temporary directory, killed (and the directory removed) on drop.
///
/// The binary is `etcd` from `PATH` (Debian: package `etcd-server`), or
/// the path in `ORCHESTRA_ETCD_BIN`. A missing binary is an error, so tests
/// that need etcd fail rather than pass without it.
pub struct EtcdTestServer {
    child: Option<Child>,
    dir: PathBuf,
    endpoint: String,
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind a free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local address: {e}"))
}

impl EtcdTestServer {
    /// Starts etcd and waits until its `/health` answers healthy. Retries
    /// on other ports when a port was taken between choosing and binding.
    pub async fn start() -> Result<Self, String> {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(free_port()?).await {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Starts etcd with its client URL on this port (e.g. one a server was
    /// configured with before etcd was up).
    pub async fn start_on(client_port: u16) -> Result<Self, String> {
        Self::try_start(client_port).await
    }

    async fn try_start(client: u16) -> Result<Self, String> {
        let bin = std::env::var("ORCHESTRA_ETCD_BIN").unwrap_or_else(|_| "etcd".into());
        let peer = free_port()?;
        let dir = std::env::temp_dir().join(format!(
            "orchestra-etcd-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let log = std::fs::File::create(dir.join("etcd.log"))
            .map_err(|e| format!("create the etcd log: {e}"))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("clone the etcd log handle: {e}"))?;
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new(&bin)
            .arg("--name=test")
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start '{bin}': {e} (install it with `apt-get install etcd-server`, \
                     or set ORCHESTRA_ETCD_BIN)"
                )
            })?;
        let mut server = Self {
            child: Some(child),
            dir,
            endpoint: client_url,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let http = reqwest::Client::new();
        let url = format!("{}/health", self.endpoint);
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log = std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default();
                let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join("\n");
                return Err(format!("etcd exited with {status}: {tail}"));
            }
            let healthy = match http
                .get(&url)
                .timeout(Duration::from_millis(500))
                .send()
                .await
            {
                Ok(r) => r
                    .json::<serde_json::Value>()
                    .await
                    .is_ok_and(|v| v["health"] == "true"),
                Err(_) => false,
            };
            if healthy {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("etcd did not become healthy in {READY_WITHIN:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Kills etcd with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EtcdTestServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl std::fmt::Debug for EtcdTestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTestServer")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}
