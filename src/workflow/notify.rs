//! Notifications: a Slack incoming webhook (reqwest) and e-mail over SMTP (lettre),
//! both configured in the platform file.
//!
//! Guarantee: a notification never fails or undoes a provisioning. Each channel is
//! tried a few times with backoff; what still fails is logged and returned, so the
//! workflow can record it in the audit trail, and the run goes on.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Serialize;
use serde_json::json;

use crate::spec::NotificationSettings;

/// Who a notification is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// The tenant's owner (`owner_email`).
    Owner,
    /// Whoever submitted the request, when it is an e-mail address.
    Requester,
    /// The platform team (`[notifications] platform_team`).
    PlatformTeam,
    /// Finance (`[notifications] finance`).
    Finance,
}

/// One message to send.
#[derive(Clone, Debug, Serialize)]
pub struct Notification {
    /// `activated`, `rejected`, `rolled_back`, `performance_warning`,
    /// `activation_blocked`, `p0_rollback_failed`.
    pub event: String,
    pub subject: String,
    pub body: String,
    pub audiences: Vec<Audience>,
}

/// What happened to one delivery.
#[derive(Clone, Debug, Serialize)]
pub struct Delivery {
    pub channel: String,
    pub to: String,
    pub ok: bool,
    pub attempts: u32,
    /// Why it failed (never contains the webhook URL or SMTP credentials).
    pub error: Option<String>,
}

/// Sends notifications through the configured channels.
pub struct Notifier {
    settings: NotificationSettings,
    /// Where the Slack webhook and SMTP URLs the settings name are read.
    environment: crate::Environment,
    http: reqwest::Client,
}

const ATTEMPTS: u32 = 3;

impl Notifier {
    /// A notifier sending through `settings`' channels, whose URLs it reads from
    /// `environment` when it sends. Sends nothing yet.
    pub fn new(settings: NotificationSettings, environment: crate::Environment) -> Self {
        Notifier {
            settings,
            environment,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client builds"),
        }
    }

    /// Sends `n` to every channel and audience; returns what happened to each delivery.
    pub async fn send(&self, n: &Notification, owner: &str, requester: &str) -> Vec<Delivery> {
        let mut out = Vec::new();
        if let Some(url) = self
            .environment
            .named(self.settings.slack_webhook_url_env.as_deref())
        {
            out.push(self.slack(&url, n).await);
        }
        if let Some(smtp) = self
            .environment
            .named(self.settings.smtp_url_env.as_deref())
        {
            let mut to: Vec<String> = Vec::new();
            for a in &n.audiences {
                match a {
                    Audience::Owner => to.push(owner.to_owned()),
                    Audience::Requester if requester.contains('@') => to.push(requester.to_owned()),
                    Audience::Requester => to.push(owner.to_owned()),
                    Audience::PlatformTeam => {
                        to.extend(self.settings.platform_team.iter().cloned())
                    }
                    Audience::Finance => to.extend(self.settings.finance.iter().cloned()),
                }
            }
            to.sort();
            to.dedup();
            for addr in to {
                out.push(self.email(&smtp, &addr, n).await);
            }
        }
        for d in out.iter().filter(|d| !d.ok) {
            tracing::warn!(event = %n.event, channel = %d.channel, to = %d.to, error = ?d.error, "notification not delivered");
        }
        out
    }

    async fn slack(&self, url: &str, n: &Notification) -> Delivery {
        let payload = json!({ "text": format!("*{}*\n{}", n.subject, n.body) });
        let result = with_retries(|| async {
            let resp = self
                .http
                .post(url)
                .json(&payload)
                .send()
                .await
                // The URL is a secret: say what failed without it.
                .map_err(|e| format!("webhook request failed: {}", e.without_url()))?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(format!("webhook answered HTTP {}", resp.status().as_u16()))
            }
        })
        .await;
        delivery("slack", "webhook", result)
    }

    async fn email(&self, smtp_url: &str, to: &str, n: &Notification) -> Delivery {
        let result = with_retries(|| async {
            let message = Message::builder()
                .from(
                    self.settings
                        .from
                        .parse()
                        .map_err(|e| format!("from address: {e}"))?,
                )
                .to(to.parse().map_err(|e| format!("address {to:?}: {e}"))?)
                .subject(&n.subject)
                .header(ContentType::TEXT_PLAIN)
                .body(n.body.clone())
                .map_err(|e| format!("message: {e}"))?;
            let mailer = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
                .map_err(|_| {
                    "the SMTP URL is not valid (smtp://host:port or smtps://user:pass@host)"
                        .to_owned()
                })?
                .timeout(Some(Duration::from_secs(10)))
                .build();
            mailer
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| format!("SMTP: {e}"))
        })
        .await;
        delivery("email", to, result)
    }
}

fn delivery(channel: &str, to: &str, result: (Result<(), String>, u32)) -> Delivery {
    Delivery {
        channel: channel.into(),
        to: to.into(),
        ok: result.0.is_ok(),
        attempts: result.1,
        error: result.0.err(),
    }
}

async fn with_retries<F, Fut>(mut f: F) -> (Result<(), String>, u32)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut last = Err(String::new());
    for attempt in 1..=ATTEMPTS {
        last = f().await;
        if last.is_ok() {
            return (last, attempt);
        }
        if attempt < ATTEMPTS {
            let delay = 100u64 * (1 << attempt) + fastrand::u64(0..100);
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
    }
    (last, ATTEMPTS)
}
