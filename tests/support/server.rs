//! A `tenantform serve` process over a workspace, for the tests of the HTTP API and the
//! portal, and the tokens `tenantform token create` makes for it.

use std::process::Child;
use std::time::{Duration, Instant};

use super::{Run, Workspace, free_port};

/// A `tenantform serve` process on a free loopback port, killed when the test ends.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub http: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// Starts the server with `env` (its key) and waits until it answers `/healthz`; its
/// log is `serve.log` in the workspace.
pub async fn start_server_with(ws: &Workspace, env: &[(&str, &str)]) -> Server {
    let port = free_port();
    let log = std::fs::File::create(ws.dir.path().join("serve.log")).unwrap();
    let child = ws
        .command(&["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("TENANTFORM_JWT_SECRET")
        .env_remove("TENANTFORM_JWT_PUBLIC_KEY")
        .envs(env.iter().copied())
        .env("TENANTFORM_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("serve starts");
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
    };
    let t0 = Instant::now();
    loop {
        if let Ok(r) = server.http.get(server.url("/healthz")).send().await
            && r.status() == reqwest::StatusCode::OK
        {
            return server;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the server did not come up: {}",
            std::fs::read_to_string(ws.dir.path().join("serve.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `tenantform token create` with the server's `secret`: the token is the last line of
/// its output.
pub fn token_with(
    ws: &Workspace,
    secret: &str,
    subject: &str,
    roles: &str,
    scopes: &str,
) -> String {
    let mut args = vec!["token", "create", "--subject", subject, "--ttl", "1h"];
    if !roles.is_empty() {
        args.extend(["--roles", roles]);
    }
    if !scopes.is_empty() {
        args.extend(["--scopes", scopes]);
    }
    let out = ws
        .command(&args)
        .env("TENANTFORM_JWT_SECRET", secret)
        .output()
        .unwrap();
    let run = Run::from(out).ok();
    run.stdout.lines().last().unwrap().trim().to_owned()
}
