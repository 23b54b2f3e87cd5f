//! The HTTP API's commands: `serve` and `token create`.

use anyhow::Context;

use tenantform::server::auth::{SECRET_VAR, TokenRequest, TokenVerifier, issue_token};
use tenantform::server::{ApiConfig, serve, webhooks};
use tokio_util::sync::CancellationToken;

use super::Outcome;
use super::args::{Cli, TokenCommand};
use super::runs::RunsCli;

/// `tenantform serve`: refuses to start without a key to verify tokens.
pub async fn cmd_serve(cli: &Cli, listen: std::net::SocketAddr) -> anyhow::Result<Outcome> {
    let verifier = TokenVerifier::from_environment(&tenantform::Environment::process())?;
    let runs = RunsCli::load(cli, 10, true).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    let config = ApiConfig {
        specs_dir: cli.specs.clone(),
        state_dir: cli.state.clone(),
        pg: runs.pg.clone(),
        runs: runs.cx.clone(),
        verifier,
    };
    // Dropped with the process: deliveries left pending are sent by the next server.
    let _webhooks = webhooks::start(&config, CancellationToken::new()).await?;
    eprintln!("Serving the API (/v1), /metrics, /healthz, /readyz on http://{addr}");
    serve(listener, config).await?;
    Ok(Outcome::Ok)
}

/// `tenantform token ...`.
pub fn cmd_token(cmd: &TokenCommand) -> anyhow::Result<Outcome> {
    match cmd {
        TokenCommand::Create {
            subject,
            roles,
            scopes,
            ttl,
        } => {
            let secret = std::env::var(SECRET_VAR).unwrap_or_default();
            let token = issue_token(
                secret.as_bytes(),
                &TokenRequest {
                    subject: subject.clone(),
                    roles: roles.clone(),
                    scopes: scopes.clone(),
                    ttl: *ttl,
                },
            )?;
            eprintln!(
                "Token for {subject} (roles: {}; scopes: {}), valid for {} s:",
                if roles.is_empty() {
                    "none".to_owned()
                } else {
                    roles.join(",")
                },
                if scopes.is_empty() {
                    "none".to_owned()
                } else {
                    scopes.join(",")
                },
                ttl.as_secs()
            );
            println!("{token}");
            Ok(Outcome::Ok)
        }
    }
}
