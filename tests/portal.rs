//! The web portal against the real stack: a `tenantform serve` process and, for the
//! whole workflow, Debian's headless Chromium driven through chromedriver (WebDriver,
//! plain HTTP + JSON). A requester signs in with a token, submits an invalid form and
//! sees the problem next to its field, submits a Gold request, the CFO and the CTO
//! approve it in their inboxes, and the request page follows it live until it is
//! active; then the tenant page shows its checks, outputs and audit trail. A screenshot
//! is taken at every step into `target/portal-screenshots/`.
//!
//! Without HTTP tricks a browser cannot show: a form POST without the session's CSRF
//! token is refused 403, and a forged or expired token cookie leads to the sign-in page.
//!
//! The browser test is skipped (saying so) only when chromium or chromedriver is not
//! installed; `scripts/test` installs them (`scripts/browser`). Every test is bounded.

mod support;

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use support::server::{Server, start_server_with, token_with};
use support::*;
use tenantform::server::auth::{TokenRequest, issue_token};

const SECRET: &str = "portal-test-secret-0123456789abcdefghijklm";
/// Every test ends within this, passed or failed.
const TEST_LIMIT: Duration = Duration::from_secs(540);

async fn bounded(test: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_LIMIT, test)
        .await
        .expect("the test ran past its time limit");
}

async fn start_server(ws: &Workspace) -> Server {
    start_server_with(ws, &[("TENANTFORM_JWT_SECRET", SECRET)]).await
}

fn token(ws: &Workspace, subject: &str, roles: &str, scopes: &str) -> String {
    token_with(ws, SECRET, subject, roles, scopes)
}

/// POSTs a form to the server as a browser encodes it, with the `Cookie` header `cookie`.
async fn post_form(
    http: &reqwest::Client,
    server: &Server,
    path: &str,
    cookie: Option<&str>,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let body = fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut r = http
        .post(server.url(path))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body);
    if let Some(c) = cookie {
        r = r.header(COOKIE, c);
    }
    r.send().await.unwrap()
}

/// Submits the request form of a Bronze tenant with `budget`, in the session of
/// `token`, with the CSRF token `csrf`.
async fn submit_form(
    http: &reqwest::Client,
    server: &Server,
    token: &str,
    csrf: Option<&str>,
    budget: &str,
) -> reqwest::Response {
    let mut fields = vec![
        ("id", "csrf-check"),
        ("name", "CSRF check"),
        ("tier", "bronze"),
        ("region", "ap-south-1"),
        ("budget_inr", budget),
        ("owner_email", "owner@csrf.example"),
        ("cost_center", "CC-TEST"),
        ("data_classification", "internal"),
    ];
    if let Some(c) = csrf {
        fields.push(("csrf", c));
    }
    let cookie = session_cookie(token);
    post_form(http, server, "/requests/new", Some(&cookie), &fields).await
}

/// The session cookie of `token`.
fn session_cookie(token: &str) -> String {
    format!("tenantform_session={token}")
}

/// The value of `<input name="csrf" value="...">` in a page.
fn csrf_of(page: &str) -> String {
    let at = page.find(r#"name="csrf" value=""#).expect("a CSRF field") + 19;
    page[at..at + page[at..].find('"').unwrap()].to_owned()
}

/// Pages without a valid session lead to sign-in; a form POST without the session's
/// CSRF token is refused 403 and records nothing; with it, the API's validation answers
/// on the form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_sessions_sign_in_again_and_forms_need_their_csrf_token() {
    bounded(async {
        let ws = Workspace::new(&[]).await;
        let server = start_server(&ws).await;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let alice = token(&ws, "alice@example.com", "requester", "requests:submit");
        let forged = issue_token(
            b"another-secret-of-enough-length-0123456789",
            &TokenRequest {
                subject: "alice@example.com".into(),
                roles: vec!["requester".into()],
                scopes: vec!["requests:submit".into()],
                ttl: Duration::from_secs(600),
            },
        )
        .unwrap();
        let expired = issue_token(
            SECRET.as_bytes(),
            &TokenRequest {
                subject: "alice@example.com".into(),
                roles: vec!["requester".into()],
                scopes: vec!["requests:submit".into()],
                ttl: Duration::ZERO,
            },
        )
        .unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;

        let r = http.get(server.url("/requests")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()[LOCATION], "/sign-in");
        for (what, bad) in [("forged", &forged), ("expired", &expired)] {
            let r = http
                .get(server.url("/requests/new"))
                .header(COOKIE, session_cookie(bad))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::SEE_OTHER, "a {what} token cookie");
            assert_eq!(r.headers()[LOCATION], "/sign-in", "a {what} token cookie");
            let cleared = r.headers()[SET_COOKIE].to_str().unwrap();
            assert!(cleared.contains("Max-Age=0"), "{what}: {cleared}");
        }
        let page = http.get(server.url("/sign-in")).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert!(
            page.text()
                .await
                .unwrap()
                .contains(r#"<label for="token">"#)
        );

        // Signing in with a forged token fails as the API's Bearer auth does.
        let r = http.get(server.url("/sign-in")).send().await.unwrap();
        let nonce_cookie = r.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let nonce = csrf_of(&r.text().await.unwrap());
        let r = post_form(
            &http,
            &server,
            "/sign-in",
            Some(&nonce_cookie),
            &[("csrf", nonce.as_str()), ("token", forged.as_str())],
        )
        .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.text().await.unwrap().contains("signature"));
        // Without the sign-in form's own value, a sign-in is refused.
        let r = post_form(
            &http,
            &server,
            "/sign-in",
            None,
            &[("csrf", nonce.as_str()), ("token", alice.as_str())],
        )
        .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = post_form(
            &http,
            &server,
            "/sign-in",
            Some(&nonce_cookie),
            &[("csrf", nonce.as_str()), ("token", alice.as_str())],
        )
        .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let set = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
        assert!(
            set.starts_with("tenantform_session=")
                && set.contains("HttpOnly")
                && set.contains("SameSite=Strict"),
            "{set}"
        );

        let form = http
            .get(server.url("/requests/new"))
            .header(COOKIE, session_cookie(&alice))
            .send()
            .await
            .unwrap();
        assert_eq!(form.status(), StatusCode::OK);
        let csrf = csrf_of(&form.text().await.unwrap());
        let altered = format!("x{}", &csrf[1..]);
        for given in [None, Some("forged"), Some(altered.as_str())] {
            let r = submit_form(&http, &server, &alice, given, "200000").await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "csrf {given:?}");
        }
        // Another session's token is not this one's.
        let bob = token(&ws, "bob@example.com", "requester", "requests:submit");
        let r = submit_form(&http, &server, &bob, Some(&csrf), "200000").await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let listed = server
            .http
            .get(server.url("/v1/requests"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        assert_eq!(
            listed["requests"],
            json!([]),
            "a refused form recorded a request"
        );

        // With the token, the API's validation answers next to the field.
        let r = submit_form(&http, &server, &alice, Some(&csrf), "10").await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let page = r.text().await.unwrap();
        assert!(
            page.contains(r#"id="budget_inr-error""#) && page.contains("outside the bronze tier"),
            "{page}"
        );
        // Signing out needs the token too.
        let r = post_form(
            &http,
            &server,
            "/sign-out",
            Some(&session_cookie(&alice)),
            &[("csrf", "nope")],
        )
        .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    })
    .await;
}

// ---- the browser --------------------------------------------------------------------

/// WebDriver's Tab and Enter keys.
const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";

/// chromedriver's element reference key (W3C WebDriver).
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session through a chromedriver process.
struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
    base: String,
    shots: PathBuf,
    shot: usize,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver leaves its Chromium running when it is killed: end the whole
        // process group it leads (Chromium's processes are in it), passed or panicked.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where chromedriver and chromium are, or why the browser test cannot run.
fn browser_binaries() -> Result<(PathBuf, PathBuf), String> {
    let find = |var: &str, name: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("PATH").and_then(|p| {
                    std::env::split_paths(&p)
                        .map(|d| d.join(name))
                        .find(|f| f.is_file())
                })
            })
            .ok_or_else(|| {
                format!("{name} is not installed (scripts/browser installs it from Debian)")
            })
    };
    Ok((
        find("TENANTFORM_CHROMEDRIVER", "chromedriver")?,
        find("TENANTFORM_CHROMIUM", "chromium")?,
    ))
}

impl Browser {
    async fn start(driver: &PathBuf, chromium: &PathBuf, shots: PathBuf) -> Browser {
        let port = free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let mut b = Browser {
            driver: child,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(90))
                .build()
                .unwrap(),
            session: String::new(),
            base: format!("http://127.0.0.1:{port}"),
            shots,
            shot: 0,
            _profile: profile,
        };
        let t0 = Instant::now();
        while b
            .http
            .get(format!("{}/status", b.base))
            .send()
            .await
            .is_err()
        {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1100",
                         format!("--user-data-dir={}", b._profile.path().display())],
            },
        }}});
        let v = b.command(reqwest::Method::POST, "/session", caps).await;
        b.session = v["sessionId"].as_str().expect("a session id").to_owned();
        b
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut r = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if method != reqwest::Method::GET {
            r = r.json(&body);
        }
        let v: Value = r
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .unwrap();
        assert!(
            v["value"]["error"].is_null(),
            "WebDriver {path}: {}",
            v["value"]
        );
        v["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.command(reqwest::Method::POST, &path, body).await
    }

    async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    async fn script(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        v[ELEMENT].as_str().expect("an element").to_owned()
    }

    /// Types `text` into the element, as a person would.
    async fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css).await;
        self.post(&format!("/element/{e}/clear"), json!({})).await;
        self.post(&format!("/element/{e}/value"), json!({"text": text}))
            .await;
    }

    async fn click(&self, css: &str) {
        let e = self.element(css).await;
        self.post(&format!("/element/{e}/click"), json!({})).await;
    }

    /// The text of the first element matching `css`, if there is one.
    async fn text(&self, css: &str) -> Option<String> {
        let v = self
            .script(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : null;",
                json!([css]),
            )
            .await;
        v.as_str().map(str::to_owned)
    }

    /// Waits until the element `css` exists and its text satisfies `ok`.
    async fn wait_for(&self, css: &str, limit: Duration, ok: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            if let Some(t) = self.text(css).await
                && ok(&t)
            {
                return t;
            }
            if t0.elapsed() > limit {
                let body = self.text("main").await.unwrap_or_default();
                panic!("{css} never became as expected; the page says: {body}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Saves a screenshot of the page as `NN-name.png`.
    async fn screenshot(&mut self, name: &str) {
        self.shot += 1;
        let v = self
            .command(
                reqwest::Method::GET,
                &format!("/session/{}/screenshot", self.session),
                Value::Null,
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("a screenshot"))
            .unwrap();
        let path = self.shots.join(format!("{:02}-{name}.png", self.shot));
        std::fs::write(&path, png).unwrap();
    }

    /// Inputs of the page that no label names (none should be).
    async fn unlabelled_inputs(&self) -> Value {
        self.script(
            "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]\
             .filter(e => !e.labels || e.labels.length === 0).map(e => e.name);",
            json!([]),
        )
        .await
    }

    async fn sign_in(&mut self, server: &Server, token: &str, who: &str) {
        self.goto(&server.url("/inbox")).await;
        // A page without a session leads to sign-in.
        self.wait_for("h1", Duration::from_secs(20), |t| t == "Sign in")
            .await;
        // By keyboard alone: Tab reaches the token field, then the button, with a
        // visible focus ring; Enter signs in.
        self.keys(TAB).await;
        assert_eq!(self.focused().await, json!(["token", "solid"]));
        self.keys(token).await;
        self.keys(TAB).await;
        assert_eq!(self.focused().await, json!(["sign-in", "solid"]));
        self.keys(ENTER).await;
        self.wait_for("#signed-in-as", Duration::from_secs(20), |t| t == who)
            .await;
    }

    /// Presses the keys of `text` on the focused element.
    async fn keys(&self, text: &str) {
        let actions: Vec<Value> = text
            .chars()
            .flat_map(|c| {
                [
                    json!({"type": "keyDown", "value": c.to_string()}),
                    json!({"type": "keyUp", "value": c.to_string()}),
                ]
            })
            .collect();
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        )
        .await;
    }

    /// The id of the focused element and the style of its outline.
    async fn focused(&self) -> Value {
        self.script(
            "const e = document.activeElement; return [e.id, getComputedStyle(e).outlineStyle];",
            json!([]),
        )
        .await
    }

    async fn sign_out(&self) {
        self.click(r#"form[action="/sign-out"] button"#).await;
        self.wait_for("h1", Duration::from_secs(20), |t| t == "Sign in")
            .await;
    }
}

/// The whole workflow in the browser: sign in, an invalid form, a Gold request, two
/// approvers' inboxes, the request page following the request until active, the tenant
/// page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gold_request_goes_from_the_form_through_two_inboxes_to_active() {
    let (driver, chromium) = match browser_binaries() {
        Ok(b) => b,
        Err(why) => {
            eprintln!("SKIPPED: the portal's browser test needs Chromium: {why}");
            return;
        }
    };
    bounded(async {
        let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/portal-screenshots");
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).unwrap();
        println!("portal screenshots: {}", shots.display());

        let ws = Workspace::new(&[]).await;
        let server = start_server(&ws).await;
        let alice = token(
            &ws,
            "alice@example.com",
            "requester",
            "requests:submit,tenants:read",
        );
        let cfo = token(&ws, "cfo@example.com", "cfo", "approvals:decide,tenants:read");
        let cto = token(&ws, "cto@example.com", "cto", "approvals:decide,tenants:read");
        let id = format!("gold{}", fastrand::u32(10_000..99_999));
        let mut b = Browser::start(&driver, &chromium, shots.clone()).await;

        b.goto(&server.url("/")).await;
        b.wait_for("h1", Duration::from_secs(20), |t| t == "Sign in").await;
        b.screenshot("sign-in").await;
        b.sign_in(&server, &alice, "alice@example.com").await;

        // The form shows the platform file's catalog and rules.
        b.click(r#"nav a[href="/requests/new"]"#).await;
        b.wait_for("h1", Duration::from_secs(20), |t| t == "Request a tenant")
            .await;
        let catalog = b.text("#tier-catalog").await.unwrap();
        assert!(catalog.contains("Gold") && catalog.contains("Bronze"), "{catalog}");
        let residency = b.text("#residency-rules").await.unwrap();
        assert!(residency.contains("DPDP") && residency.contains("ap-south-1"), "{residency}");
        assert_eq!(b.unlabelled_inputs().await, json!([]));
        b.screenshot("request-form").await;

        // Invalid first: a Gold budget far below the tier's range.
        b.type_into("#id", &id).await;
        b.type_into("#name", "Gold Portal Tenant").await;
        b.click(r#"#tier option[value="gold"]"#).await;
        b.click(r#"#region option[value="ap-south-1"]"#).await;
        b.type_into("#budget_inr", "10").await;
        b.type_into("#owner_email", "owner@gold.example").await;
        b.type_into("#cost_center", "CC-GOLD").await;
        b.click(r#"#data_classification option[value="internal"]"#).await;
        b.type_into("#notes", "launch of the gold customer").await;
        b.click("#submit-request").await;
        let error = b
            .wait_for("#field-budget_inr .field-error", Duration::from_secs(30), |_| true)
            .await;
        assert!(
            error.contains("outside the gold tier's range") && error.contains("choose another tier or budget"),
            "{error}"
        );
        let invalid = b
            .script("return document.getElementById('budget_inr').getAttribute('aria-invalid');", json!([]))
            .await;
        assert_eq!(invalid, "true");
        // The form keeps what was typed.
        let kept = b
            .script("return document.getElementById('tier').value;", json!([]))
            .await;
        assert_eq!(kept, "gold");
        b.screenshot("invalid-budget").await;

        b.type_into("#budget_inr", "1500000").await;
        b.click("#submit-request").await;
        b.wait_for("#status", Duration::from_secs(60), |t| t == "pending_approval")
            .await;
        let approvals = b.text("#approvals").await.unwrap();
        assert!(
            approvals.contains("cfo") && approvals.contains("cto") && approvals.contains("tier"),
            "{approvals}"
        );
        assert!(!approvals.contains("dpo"), "ap-south-1 is at home: {approvals}");
        b.screenshot("pending-approval").await;
        let request_url = server.url(&format!("/requests/{id}"));
        b.sign_out().await;

        // Each approver decides in their inbox, which says why their role is asked.
        for (who, token, role, why) in [
            ("cfo@example.com", &cfo, "cfo", "budget ₹15 lakh"),
            ("cto@example.com", &cto, "cto", "gold"),
        ] {
            b.sign_in(&server, token, who).await;
            b.click(r#"nav a[href="/inbox"]"#).await;
            let item = b
                .wait_for(&format!("#inbox-{id}"), Duration::from_secs(20), |_| true)
                .await;
            assert!(item.contains(why) && item.contains("alice@example.com"), "{item}");
            assert_eq!(b.unlabelled_inputs().await, json!([]));
            b.type_into(&format!("#note-{id}-{role}"), &format!("fine by {role}"))
                .await;
            b.screenshot(&format!("inbox-{role}")).await;
            b.click(&format!("#approve-{id}-{role}")).await;
            let decision = b
                .wait_for(
                    &format!(r#"#approvals tr[data-role="{role}"] .decision"#),
                    Duration::from_secs(60),
                    |t| t.contains("approve"),
                )
                .await;
            assert!(decision.contains(who) && decision.contains(&format!("fine by {role}")), "{decision}");
            b.screenshot(&format!("approved-by-{role}")).await;
            if role == "cfo" {
                b.goto(&server.url("/inbox")).await;
                b.wait_for("#inbox-empty", Duration::from_secs(20), |_| true).await;
                b.sign_out().await;
            }
        }

        // The CTO's approval was the last: the request page, left open, follows the
        // request through provisioning to active without anyone reloading it.
        let first = b.text("#status").await.unwrap();
        assert_ne!(first, "pending_approval");
        let mut seen = vec![first];
        let t0 = Instant::now();
        loop {
            let now = b.text("#status").await.unwrap_or_default();
            if seen.last() != Some(&now) && !now.is_empty() {
                if now == "provisioning" || now == "validating" {
                    b.screenshot(&now).await;
                }
                seen.push(now.clone());
            }
            if ["active", "failed", "rolled_back"].contains(&now.as_str()) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(360),
                "still {now} (seen {seen:?})"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let url = b
            .command(
                reqwest::Method::GET,
                &format!("/session/{}/url", b.session),
                Value::Null,
            )
            .await;
        assert_eq!(url, request_url, "the page was left where it was");
        assert_eq!(seen.last().unwrap(), "active", "statuses seen: {seen:?}: {}", b.text("main").await.unwrap_or_default());
        b.screenshot("active").await;
        b.sign_out().await;

        // The requester's view of the tenant.
        b.sign_in(&server, &alice, "alice@example.com").await;
        b.goto(&server.url(&format!("/tenants/{id}"))).await;
        b.wait_for("#tenant-status", Duration::from_secs(60), |t| t == "active")
            .await;
        let verdicts = b
            .script(
                "return [...document.querySelectorAll('#checks td.passed, #checks td.failed')].map(e => e.textContent);",
                json!([]),
            )
            .await;
        let verdicts: Vec<&str> = verdicts.as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(
            !verdicts.is_empty() && verdicts.iter().all(|v| *v == "passed"),
            "{verdicts:?}: {}",
            b.text("#checks").await.unwrap_or_default()
        );
        let outputs = b.text("#outputs").await.unwrap_or_default();
        // Secrets stay out of the page: the passwords are in the tenant's credentials
        // secret, and the page says where that is.
        assert!(
            outputs.contains(&id)
                && outputs.contains("credentials_secret_arn")
                && !outputs.contains("password"),
            "{outputs}"
        );
        let audit = b.text("#audit").await.unwrap_or_default();
        assert!(
            audit.contains("cfo@example.com") && audit.contains("cto@example.com") && audit.contains("active"),
            "{audit}"
        );
        let drift = b.text("#drift").await.unwrap_or_default();
        assert!(drift.contains("No drift check"), "{drift}");
        b.screenshot("tenant").await;
        let taken = std::fs::read_dir(&shots).unwrap().count();
        assert!(taken >= 10, "{taken} screenshots in {}", shots.display());
        println!("portal screenshots: {taken} in {}", shots.display());
    })
    .await;
}
