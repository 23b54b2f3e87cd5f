//! The HTTP API against the real stack: a `tenantform serve` process on a free loopback
//! port, over a workspace's own database, driven with an HTTP client and tokens from
//! `tenantform token create`. Every route with no token, a forged or expired one, one
//! without the right scope, and the right one; idempotency keys (a replay, a reuse with
//! another body, 20 concurrent duplicates); the stale-plan rule through the API; and a
//! request submitted and approved through the API until its tenant is active.
//!
//! Runs are executed by the server itself (`[runs] executor = "embedded"`, the
//! platform file's default). Every test is bounded in time.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::server::{Server, start_server_with, token_with};
use support::*;
use tenantform::server::auth::{Claims, TokenRequest, issue_token};

const SECRET: &str = "api-test-secret-0123456789abcdefghijklmnop";
/// Every test ends within this, passed or failed.
const TEST_LIMIT: Duration = Duration::from_secs(420);

const ALL_SCOPES: &str = "tenants:read,runs:plan,runs:apply,requests:submit,approvals:decide";

/// Starts the server with the test's secret.
async fn start_server(ws: &Workspace) -> Server {
    start_server_with(ws, &[("TENANTFORM_JWT_SECRET", SECRET)]).await
}

/// An answer: status, body, and whether it was a replay.
struct Answer {
    status: StatusCode,
    body: Value,
    replayed: bool,
}

impl Server {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.expect("the server answers");
        let status = r.status();
        let replayed = r.headers().contains_key("idempotent-replayed");
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            body,
            replayed,
        }
    }

    async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, Some(token), None, None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(token), None, Some(&body))
            .await
    }

    /// Confirms the planned run `id` and waits for it to end `applied`; the run.
    async fn apply_planned(&self, id: &str, token: &str) -> Value {
        let a = self
            .post(&format!("/v1/runs/{id}/actions/apply"), token, json!({}))
            .await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{:#}", a.body);
        let run = self.wait_for_run(id, token, &["applied", "errored"]).await;
        assert_eq!(run["status"], "applied", "{run:#}");
        run
    }

    /// Polls a run until its status is one of `statuses`.
    async fn wait_for_run(&self, id: &str, token: &str, statuses: &[&str]) -> Value {
        let t0 = Instant::now();
        loop {
            let a = self.get(&format!("/v1/runs/{id}"), token).await;
            assert_eq!(a.status, StatusCode::OK, "{:#}", a.body);
            if statuses.contains(&a.body["status"].as_str().unwrap_or("")) {
                return a.body;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(240),
                "run {id} never reached {statuses:?}: {:#}",
                a.body
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A workspace with one Bronze tenant, its server, and a token with every scope.
async fn with_tenant(prefix: &str) -> (TenantDef, Workspace, Server, String) {
    let t = bronze(prefix);
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    let server = start_server(&ws).await;
    let admin = token(&ws, "admin", "platform-admin", ALL_SCOPES);
    (t, ws, server, admin)
}

/// `tenantform token create` with the test's secret.
fn token(ws: &Workspace, subject: &str, roles: &str, scopes: &str) -> String {
    token_with(ws, SECRET, subject, roles, scopes)
}

/// A Bronze tenant in India with a small budget: no approval needed.
fn bronze(prefix: &str) -> TenantDef {
    let mut t = TenantDef::new(prefix, "bronze");
    t.region = "ap-south-1".into();
    t.budget_inr = 200_000;
    t
}

/// A Silver tenant whose budget (₹15 lakh) needs the CFO's approval.
fn for_the_cfo(prefix: &str) -> TenantDef {
    let mut t = TenantDef::new(prefix, "silver");
    t.region = "ap-south-1".into();
    t.budget_inr = 1_500_000;
    t
}

/// The request body of tenant `t` (the request file's fields as JSON).
fn request_body(t: &TenantDef) -> Value {
    json!({
        "id": t.id, "name": t.name, "tier": t.tier, "region": t.region,
        "budget_inr": t.budget_inr, "owner_email": format!("owner@{}.example", t.id),
        "cost_center": "CC-TEST", "data_classification": t.classification,
        "protected": t.protected,
    })
}

fn assert_error_shape(a: &Answer, status: StatusCode, what: &str) {
    assert_eq!(a.status, status, "{what}: {:#}", a.body);
    let e = &a.body["error"];
    assert!(
        e["code"].is_string() && e["message"].is_string() && e.get("details").is_some(),
        "{what}: not the error shape: {:#}",
        a.body
    );
}

async fn bounded(test: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_LIMIT, test)
        .await
        .expect("the test ran past its time limit");
}

/// Without a key the server does not start and says which variable to set; `token
/// create` needs the secret too, and prints the token alone on its last line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_to_start_without_a_key() {
    bounded(async {
        let ws = Workspace::new(&[]).await;
        let out = ws
            .command(&["serve", "--listen", "127.0.0.1:0"])
            .env_remove("TENANTFORM_JWT_SECRET")
            .env_remove("TENANTFORM_JWT_PUBLIC_KEY")
            .output()
            .unwrap();
        Run::from(out)
            .code(1)
            .contains("TENANTFORM_JWT_SECRET")
            .contains("the server was not started");
        let out = ws
            .command(&["serve", "--listen", "127.0.0.1:0"])
            .env("TENANTFORM_JWT_SECRET", "short")
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        Run::from(out).code(1).contains("at least 32");
        let out = ws
            .command(&["token", "create", "--subject", "ci-bot"])
            .env_remove("TENANTFORM_JWT_SECRET")
            .output()
            .unwrap();
        Run::from(out).code(1).contains("TENANTFORM_JWT_SECRET");
        let out = ws
            .command(&["token", "create", "--subject", "ci-bot", "--roles", "boss"])
            .env("TENANTFORM_JWT_SECRET", SECRET)
            .output()
            .unwrap();
        Run::from(out).code(1).contains("unknown role \"boss\"");
        let t = token(&ws, "ci-bot", "requester", "runs:plan,runs:apply");
        assert_eq!(t.split('.').count(), 3, "a JWT: {t}");
        assert!(!t.contains(SECRET));
    })
    .await;
}

/// Every route: no token, a forged, an expired and a malformed one are 401; a valid
/// token without the route's scope is 403; the right token succeeds. The probes need
/// no token; every error has the one shape; no body carries a tenant's secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_a_token_with_its_scope() {
    bounded(async {
        let (t, ws, server, admin) = with_tenant("ap").await;
        let nothing = token(&ws, "nobody", "requester", "");
        let forged = issue_token(
            b"another-secret-that-is-long-enough-0123456789",
            &TokenRequest {
                subject: "admin".into(),
                roles: vec!["platform-admin".into()],
                scopes: ALL_SCOPES.split(',').map(str::to_owned).collect(),
                ttl: Duration::from_secs(3600),
            },
        )
        .unwrap();
        let expired = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &Claims {
                sub: "admin".into(),
                roles: vec!["platform-admin".into()],
                scopes: ALL_SCOPES.split(',').map(str::to_owned).collect(),
                iat: 1_000,
                exp: 2_000,
            },
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();

        // Probes: no token.
        for path in ["/healthz", "/readyz", "/metrics"] {
            let a = server.call(Method::GET, path, None, None, None).await;
            assert_eq!(a.status, StatusCode::OK, "{path}: {:#}", a.body);
        }
        assert_eq!(
            server
                .call(Method::GET, "/readyz", None, None, None)
                .await
                .body["status"],
            "ready"
        );
        let a = server.get("/nowhere", &admin).await;
        assert_error_shape(&a, StatusCode::NOT_FOUND, "an unknown route");

        // Things for the routes to act on: a plan run, planned; a queued drift run to
        // cancel; a request waiting for the CFO.
        let plan = server
            .post(
                &format!("/v1/tenants/{}/runs", t.id),
                &admin,
                json!({"operation": "plan"}),
            )
            .await;
        assert_eq!(plan.status, StatusCode::ACCEPTED, "{:#}", plan.body);
        let plan_id = plan.body["id"].as_str().unwrap().to_owned();
        assert_eq!(plan.body["requested_by"], "admin");
        server.wait_for_run(&plan_id, &admin, &["planned"]).await;
        let big = for_the_cfo("aq");
        let req = server
            .post("/v1/requests", &admin, request_body(&big))
            .await;
        assert_eq!(req.status, StatusCode::CREATED, "{:#}", req.body);
        assert_eq!(req.body["status"], "pending_approval");

        // Waits for the CFO, so that nothing is provisioned here.
        let another = for_the_cfo("ar");
        // (method, path, body, the scope it needs, what the right token gets)
        let routes: Vec<(Method, String, Value, &str, StatusCode)> = vec![
            (
                Method::GET,
                "/v1/tenants".into(),
                Value::Null,
                "tenants:read",
                StatusCode::OK,
            ),
            (
                Method::GET,
                format!("/v1/tenants/{}", t.id),
                Value::Null,
                "tenants:read",
                StatusCode::OK,
            ),
            (
                Method::POST,
                format!("/v1/tenants/{}/runs", t.id),
                json!({"operation": "drift"}),
                "runs:plan",
                StatusCode::ACCEPTED,
            ),
            (
                Method::POST,
                format!("/v1/tenants/{}/runs", t.id),
                json!({"operation": "apply"}),
                "runs:apply",
                StatusCode::ACCEPTED,
            ),
            (
                Method::POST,
                format!("/v1/tenants/{}/runs", t.id),
                json!({"operation": "destroy"}),
                "runs:apply",
                StatusCode::ACCEPTED,
            ),
            (
                Method::GET,
                format!("/v1/runs/{plan_id}"),
                Value::Null,
                "tenants:read",
                StatusCode::OK,
            ),
            (
                Method::GET,
                format!("/v1/runs/{plan_id}/plan"),
                Value::Null,
                "tenants:read",
                StatusCode::OK,
            ),
            (
                Method::POST,
                format!("/v1/runs/{plan_id}/actions/discard"),
                json!({}),
                "runs:plan",
                StatusCode::OK,
            ),
            (
                Method::GET,
                "/v1/requests".into(),
                Value::Null,
                "requests:submit",
                StatusCode::OK,
            ),
            (
                Method::GET,
                format!("/v1/requests/{}", big.id),
                Value::Null,
                "requests:submit",
                StatusCode::OK,
            ),
            (
                Method::POST,
                "/v1/requests".into(),
                request_body(&another),
                "requests:submit",
                StatusCode::CREATED,
            ),
            (
                Method::POST,
                format!("/v1/requests/{}/approvals", big.id),
                json!({"decision": "reject", "note": "too big"}),
                "approvals:decide",
                StatusCode::OK,
            ),
        ];
        for (method, path, body, scope, ok) in &routes {
            let body = (!body.is_null()).then_some(body);
            let what = format!("{method} {path}");
            let a = server.call(method.clone(), path, None, None, body).await;
            assert_error_shape(
                &a,
                StatusCode::UNAUTHORIZED,
                &format!("{what} without a token"),
            );
            for (name, bad) in [
                ("forged", &forged),
                ("expired", &expired),
                ("malformed", &"x.y.z".to_owned()),
            ] {
                let a = server
                    .call(method.clone(), path, Some(bad), None, body)
                    .await;
                assert_error_shape(
                    &a,
                    StatusCode::UNAUTHORIZED,
                    &format!("{what} with a {name} token"),
                );
                assert!(
                    !a.body.to_string().contains(bad.as_str()),
                    "the token is echoed"
                );
            }
            let a = server
                .call(method.clone(), path, Some(&nothing), None, body)
                .await;
            assert_error_shape(
                &a,
                StatusCode::FORBIDDEN,
                &format!("{what} without {scope}"),
            );
            // The right scope (and, for the decision, the CFO's role).
            // (A requester sees only their own requests: the approver sees every one.)
            let role = if path.starts_with("/v1/requests/") {
                "cfo"
            } else {
                "requester"
            };
            let right = token(
                &ws,
                &format!("holder-of-{}", scope.replace(':', "-")),
                role,
                scope,
            );
            let a = server
                .call(method.clone(), path, Some(&right), None, body)
                .await;
            assert_eq!(a.status, *ok, "{what} with {scope}: {:#}", a.body);
        }
        // runs:plan does not apply or destroy; the expired token says so.
        let planner = token(&ws, "planner", "requester", "runs:plan");
        for op in ["apply", "destroy"] {
            let a = server
                .post(
                    &format!("/v1/tenants/{}/runs", t.id),
                    &planner,
                    json!({"operation": op}),
                )
                .await;
            assert_error_shape(&a, StatusCode::FORBIDDEN, op);
            assert!(
                a.body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("runs:apply")
            );
        }
        let a = server.get("/v1/tenants", &expired).await;
        assert!(
            a.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("expired"),
            "{:#}",
            a.body
        );
        // Bad input: 400 for a body that is not JSON, 422 for an unknown operation,
        // 404 for an unknown tenant or run.
        let a = server
            .call(
                Method::POST,
                &format!("/v1/tenants/{}/runs", t.id),
                Some(&admin),
                None,
                None,
            )
            .await;
        assert_error_shape(&a, StatusCode::BAD_REQUEST, "no operation");
        let a = server
            .post(
                &format!("/v1/tenants/{}/runs", t.id),
                &admin,
                json!({"operation": "explode"}),
            )
            .await;
        assert_error_shape(&a, StatusCode::UNPROCESSABLE_ENTITY, "an unknown operation");
        let a = server
            .post(
                "/v1/tenants/nobody-here/runs",
                &admin,
                json!({"operation": "plan"}),
            )
            .await;
        assert_error_shape(&a, StatusCode::NOT_FOUND, "an unknown tenant");
        let a = server
            .get("/v1/runs/00000000-0000-0000-0000-000000000000", &admin)
            .await;
        assert_error_shape(&a, StatusCode::NOT_FOUND, "an unknown run");
    })
    .await;
}

/// The same key and body return the first answer; the same key with another body is a
/// 409; 20 concurrent duplicates make one run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_replay_refuse_and_make_one_run() {
    bounded(async {
        let (t, ws, server, admin) = with_tenant("ai").await;
        let path = format!("/v1/tenants/{}/runs", t.id);
        let body = json!({"operation": "drift", "message": "nightly"});
        let first = server
            .call(
                Method::POST,
                &path,
                Some(&admin),
                Some("key-1"),
                Some(&body),
            )
            .await;
        assert_eq!(first.status, StatusCode::ACCEPTED, "{:#}", first.body);
        assert!(!first.replayed);
        let again = server
            .call(
                Method::POST,
                &path,
                Some(&admin),
                Some("key-1"),
                Some(&body),
            )
            .await;
        assert_eq!(again.status, StatusCode::ACCEPTED);
        assert!(again.replayed);
        assert_eq!(again.body["id"], first.body["id"]);
        let other = json!({"operation": "drift", "message": "another"});
        let reused = server
            .call(
                Method::POST,
                &path,
                Some(&admin),
                Some("key-1"),
                Some(&other),
            )
            .await;
        assert_error_shape(
            &reused,
            StatusCode::CONFLICT,
            "a key reused with another body",
        );
        assert_eq!(reused.body["error"]["code"], "idempotency_key_reused");
        let a = server
            .call(
                Method::POST,
                &path,
                Some(&admin),
                Some("has space"),
                Some(&body),
            )
            .await;
        assert_error_shape(&a, StatusCode::BAD_REQUEST, "a malformed key");

        // 20 at once with one key: one run.
        let body = json!({"operation": "plan", "message": "concurrent"});
        let answers = futures::future::join_all((0..20).map(|_| {
            server.call(
                Method::POST,
                &path,
                Some(&admin),
                Some("key-20"),
                Some(&body),
            )
        }))
        .await;
        let ids: std::collections::BTreeSet<String> = answers
            .iter()
            .map(|a| {
                assert_eq!(a.status, StatusCode::ACCEPTED, "{:#}", a.body);
                a.body["id"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(ids.len(), 1, "20 duplicates made {} runs", ids.len());
        assert_eq!(answers.iter().filter(|a| !a.replayed).count(), 1);
        let runs: i64 = ws
            .admin()
            .await
            .query_one(
                "SELECT count(*) FROM tenantform.runs WHERE tenant = $1 AND message = 'concurrent'",
                &[&t.id],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(runs, 1);
        // A key is the caller's: another subject with the same key gets its own run.
        let ci = token(&ws, "ci-bot", "requester", "runs:plan");
        let mine = server
            .call(Method::POST, &path, Some(&ci), Some("key-20"), Some(&body))
            .await;
        assert_eq!(mine.status, StatusCode::ACCEPTED);
        assert!(!mine.replayed);
        assert_ne!(mine.body["id"], answers[0].body["id"]);
    })
    .await;
}

/// Two plans of one tenant; the first is applied through the API, then the second,
/// made against the state before, is refused as stale (409) and stays planned. A run
/// that is not planned cannot be applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_of_a_plan_made_before_the_state_moved_is_refused() {
    bounded(async {
        let (t, ws, server, admin) = with_tenant("as").await;
        let path = format!("/v1/tenants/{}/runs", t.id);
        let p1 = server
            .post(&path, &admin, json!({"operation": "plan"}))
            .await;
        let p2 = server
            .post(&path, &admin, json!({"operation": "plan"}))
            .await;
        let (p1, p2) = (
            p1.body["id"].as_str().unwrap().to_owned(),
            p2.body["id"].as_str().unwrap().to_owned(),
        );
        let v1 = server.wait_for_run(&p1, &admin, &["planned"]).await;
        assert_eq!(v1["allowed_actions"], json!(["apply", "discard"]), "{v1:#}");
        server.wait_for_run(&p2, &admin, &["planned"]).await;
        let plan = server.get(&format!("/v1/runs/{p1}/plan"), &admin).await;
        assert_eq!(plan.status, StatusCode::OK);
        assert_eq!(plan.body["summary"]["add"], PER_TENANT, "{:#}", plan.body);

        let planner = token(&ws, "planner", "requester", "runs:plan");
        let a = server
            .post(&format!("/v1/runs/{p1}/actions/apply"), &planner, json!({}))
            .await;
        assert_error_shape(&a, StatusCode::FORBIDDEN, "apply with runs:plan");
        server.apply_planned(&p1, &admin).await;
        assert!(ws.state_json(&t.id).is_some());

        let a = server
            .post(&format!("/v1/runs/{p2}/actions/apply"), &admin, json!({}))
            .await;
        assert_error_shape(&a, StatusCode::CONFLICT, "a stale plan");
        assert_eq!(a.body["error"]["code"], "stale_plan");
        assert!(
            a.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("the saved plan is stale for tenant {}", t.id)),
            "{:#}",
            a.body
        );
        let v2 = server.get(&format!("/v1/runs/{p2}"), &admin).await;
        assert_eq!(v2.body["status"], "planned", "nothing changed");
        let a = server
            .post(&format!("/v1/runs/{p1}/actions/apply"), &admin, json!({}))
            .await;
        assert_error_shape(&a, StatusCode::CONFLICT, "applying an applied run");

        // The tenant's view: its outputs, the password redacted.
        let view = server.get(&format!("/v1/tenants/{}", t.id), &admin).await;
        assert_eq!(view.status, StatusCode::OK);
        assert_eq!(view.body["status"], "applied");
        assert_eq!(
            view.body["state"]["resources"].as_array().unwrap().len(),
            PER_TENANT
        );
        let text = view.body.to_string();
        assert!(
            !text.contains(&ws.password(&t.id).await),
            "a secret in the tenant's view"
        );
        let log = std::fs::read_to_string(ws.dir.path().join("serve.log")).unwrap();
        assert!(
            !log.contains(&ws.password(&t.id).await),
            "a secret in the server's log"
        );
        assert!(!log.contains(SECRET), "the key in the server's log");
    })
    .await;
}

/// A run asked to rotate sets the tenant's passwords anew, as `apply --rotate` does: its
/// plan updates the role, the Redis user and the secret, the old PostgreSQL and Redis
/// passwords stop working, the new ones (in the tenant's secret) log in, and no
/// password is in any answer or the server's log. A destroy asked to rotate is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotate_run_sets_new_passwords_and_shows_none() {
    bounded(async {
        let (t, ws, server, admin) = with_tenant("rr").await;
        let path = format!("/v1/tenants/{}/runs", t.id);
        let mut answers = String::new();
        let first = server
            .post(
                &path,
                &admin,
                json!({"operation": "apply", "auto_apply": true}),
            )
            .await;
        assert_eq!(first.status, StatusCode::ACCEPTED, "{:#}", first.body);
        let id = first.body["id"].as_str().unwrap().to_owned();
        let v = server
            .wait_for_run(&id, &admin, &["applied", "errored"])
            .await;
        assert_eq!(v["status"], "applied", "{v:#}");
        assert_eq!(v["rotate"], false, "{v:#}");
        let (old_pg, old_redis) = (ws.password(&t.id).await, ws.redis_password(&t.id).await);

        let refused = server
            .post(
                &path,
                &admin,
                json!({"operation": "destroy", "rotate": true}),
            )
            .await;
        assert_error_shape(
            &refused,
            StatusCode::UNPROCESSABLE_ENTITY,
            "rotate a destroy",
        );
        assert!(
            refused.body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("rotate: a destroy run does not rotate"),
            "{:#}",
            refused.body
        );

        let planned = server
            .post(&path, &admin, json!({"operation": "plan", "rotate": true}))
            .await;
        assert_eq!(planned.status, StatusCode::ACCEPTED, "{:#}", planned.body);
        answers += &planned.body.to_string();
        let p = planned.body["id"].as_str().unwrap().to_owned();
        let v = server
            .wait_for_run(&p, &admin, &["planned", "errored"])
            .await;
        assert_eq!(
            (&v["status"], &v["rotate"]),
            (&json!("planned"), &json!(true)),
            "{v:#}"
        );
        let plan = server.get(&format!("/v1/runs/{p}/plan"), &admin).await;
        answers += &plan.body.to_string();
        assert_eq!(
            plan.body["summary"],
            json!({"add": 0, "change": 3, "destroy": 0}),
            "{:#}",
            plan.body
        );
        answers += &server.apply_planned(&p, &admin).await.to_string();
        answers += &server
            .get(&format!("/v1/tenants/{}", t.id), &admin)
            .await
            .body
            .to_string();

        let (new_pg, new_redis) = (ws.password(&t.id).await, ws.redis_password(&t.id).await);
        assert_ne!(new_pg, old_pg);
        assert_ne!(new_redis, old_redis);
        connect(&t.pg_name(), &old_pg, &ws.database)
            .await
            .expect_err("the old PostgreSQL password no longer works");
        connect(&t.pg_name(), &new_pg, &ws.database)
            .await
            .expect("the new PostgreSQL password works");
        redis_as(&t.pg_name(), &old_redis)
            .await
            .expect_err("the old Redis password no longer works");
        redis_as(&t.pg_name(), &new_redis)
            .await
            .expect("the new Redis password works");
        let log = std::fs::read_to_string(ws.dir.path().join("serve.log")).unwrap();
        for secret in [&old_pg, &old_redis, &new_pg, &new_redis] {
            assert!(
                !answers.contains(secret.as_str()),
                "a password in an answer"
            );
            assert!(
                !log.contains(secret.as_str()),
                "a password in the server's log"
            );
        }
    })
    .await;
}

/// A request with a bad field is refused with the CLI's texts as details; a valid one
/// waits for the CFO; the requester sees only their own requests; an approver of a
/// role it does not need is refused; the CFO's approval provisions it until active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_submitted_and_approved_through_the_api_ends_active() {
    bounded(async {
        let ws = Workspace::new(&[]).await;
        let server = start_server(&ws).await;
        let alice = token(&ws, "alice@example.com", "requester", "requests:submit");
        let bob = token(&ws, "bob@example.com", "requester", "requests:submit");
        let cfo = token(&ws, "cfo@example.com", "cfo", "approvals:decide");
        let cto = token(&ws, "cto@example.com", "cto", "approvals:decide");
        let t = for_the_cfo("aa");

        let mut bad = request_body(&t);
        bad["tier"] = json!("platinum");
        let a = server.post("/v1/requests", &alice, bad).await;
        assert_error_shape(&a, StatusCode::UNPROCESSABLE_ENTITY, "an unknown tier");
        let details = a.body["error"]["details"].as_array().unwrap();
        assert!(
            details
                .iter()
                .any(|d| d["field"] == "tier" && d["fix"].is_string()),
            "{:#}",
            a.body
        );
        let mut poor = request_body(&t);
        poor["budget_inr"] = json!(10);
        let a = server.post("/v1/requests", &alice, poor).await;
        assert_error_shape(
            &a,
            StatusCode::UNPROCESSABLE_ENTITY,
            "a budget out of range",
        );
        assert_eq!(
            a.body["error"]["details"][0]["field"], "budget_inr",
            "{:#}",
            a.body
        );

        let a = server.post("/v1/requests", &alice, request_body(&t)).await;
        assert_eq!(a.status, StatusCode::CREATED, "{:#}", a.body);
        assert_eq!(a.body["status"], "pending_approval");
        assert_eq!(a.body["requester"], "alice@example.com");
        assert_eq!(a.body["pending_approvals"], json!(["cfo"]));
        let again = server.post("/v1/requests", &alice, request_body(&t)).await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(again.body["created"], false);

        let path = format!("/v1/requests/{}", t.id);
        assert_eq!(server.get(&path, &alice).await.status, StatusCode::OK);
        assert_error_shape(
            &server.get(&path, &bob).await,
            StatusCode::NOT_FOUND,
            "another's request",
        );
        let bobs = server.get("/v1/requests", &bob).await;
        assert_eq!(bobs.body["requests"], json!([]), "{:#}", bobs.body);
        let alices = server.get("/v1/requests", &alice).await;
        assert_eq!(alices.body["requests"].as_array().unwrap().len(), 1);
        assert_eq!(
            server.get("/v1/requests", &cfo).await.body["requests"]
                .as_array()
                .unwrap()
                .len(),
            1
        );

        let approvals = format!("{path}/approvals");
        let a = server
            .post(&approvals, &alice, json!({"decision": "approve"}))
            .await;
        assert_error_shape(&a, StatusCode::FORBIDDEN, "a requester approving");
        let a = server
            .post(&approvals, &cto, json!({"decision": "approve"}))
            .await;
        assert_error_shape(
            &a,
            StatusCode::FORBIDDEN,
            "a role the request does not need",
        );
        let a = server
            .post(
                &approvals,
                &cto,
                json!({"decision": "approve", "role": "cfo"}),
            )
            .await;
        assert_error_shape(&a, StatusCode::FORBIDDEN, "a role the token does not carry");
        let a = server
            .post(&approvals, &cfo, json!({"decision": "maybe"}))
            .await;
        assert_error_shape(&a, StatusCode::UNPROCESSABLE_ENTITY, "no decision");
        let a = server
            .call(
                Method::POST,
                &approvals,
                Some(&cfo),
                Some("approve-1"),
                Some(&json!({"decision": "approve", "note": "fine"})),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{:#}", a.body);
        assert_eq!(
            a.body["decisions"][0]["decided_by"], "cfo@example.com",
            "{:#}",
            a.body
        );
        // A retry of the same approval is its first answer, not a second decision.
        let retry = server
            .call(
                Method::POST,
                &approvals,
                Some(&cfo),
                Some("approve-1"),
                Some(&json!({"decision": "approve", "note": "fine"})),
            )
            .await;
        assert!(retry.replayed);
        assert_eq!(retry.status, StatusCode::OK);

        let t0 = Instant::now();
        let last = loop {
            let v = server.get(&path, &alice).await;
            let status = v.body["status"].as_str().unwrap_or("").to_owned();
            if ["active", "rolled_back", "failed"].contains(&status.as_str()) {
                break v;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(300),
                "still {status}: {:#}",
                v.body
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert_eq!(last.body["status"], "active", "{:#}", last.body);
        // The run writes its end just after the request's.
        let viewer = token(&ws, "viewer", "requester", "tenants:read");
        let run = last.body["run"]["id"].as_str().unwrap();
        let run = server
            .wait_for_run(run, &viewer, &["applied", "errored", "rolled_back"])
            .await;
        assert_eq!(run["status"], "applied", "{run:#}");
        let tenants = server.get("/v1/tenants", &viewer).await;
        let listed = tenants.body["tenants"].as_array().unwrap();
        assert!(
            listed
                .iter()
                .any(|x| x["id"] == t.id.as_str() && x["status"] == "active"),
            "{:#}",
            tenants.body
        );
    })
    .await;
}

/// With a public key file instead of a secret, the server takes ES256 tokens signed by
/// its private key, and refuses HS256 ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_es256_public_key_verifies_tokens() {
    bounded(async {
        let ws = Workspace::new(&[]).await;
        let private = ws.dir.path().join("api-key.pem");
        let public = ws.dir.path().join("api-key.pub.pem");
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            private.to_str().unwrap(),
        ]);
        openssl(&[
            "pkey",
            "-in",
            private.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ]);
        let server = start_server_with(
            &ws,
            &[("TENANTFORM_JWT_PUBLIC_KEY", public.to_str().unwrap())],
        )
        .await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let signed = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &Claims {
                sub: "deploy-bot".into(),
                roles: vec![],
                scopes: vec!["tenants:read".into()],
                iat: now,
                exp: now + 600,
            },
            &jsonwebtoken::EncodingKey::from_ec_pem(&std::fs::read(&private).unwrap()).unwrap(),
        )
        .unwrap();
        let a = server.get("/v1/tenants", &signed).await;
        assert_eq!(a.status, StatusCode::OK, "{:#}", a.body);
        let hs = token(&ws, "deploy-bot", "", "tenants:read");
        assert_error_shape(
            &server.get("/v1/tenants", &hs).await,
            StatusCode::UNAUTHORIZED,
            "an HS256 token",
        );
    })
    .await;
}

/// One Server-Sent Event: its id, its name and its data.
#[derive(Clone, Debug, PartialEq)]
struct SseEvent {
    id: i64,
    name: String,
    data: Value,
}

/// Reads the SSE stream at `path` from after `last_id`: `limit` events and then drops
/// the connection (a client that goes away mid-stream), or every event until the
/// server ends the stream. Returns the events and whether the server ended it.
async fn read_events(
    server: &Server,
    path: &str,
    token: &str,
    last_id: Option<i64>,
    limit: Option<usize>,
) -> (Vec<SseEvent>, bool) {
    let mut req = server.http.get(server.url(path)).bearer_auth(token);
    if let Some(id) = last_id {
        req = req.header("Last-Event-ID", id.to_string());
    }
    let mut r = req.send().await.expect("the server answers");
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/event-stream",
        "{path}"
    );
    let (mut buf, mut events) = (String::new(), Vec::new());
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut id, mut name, mut data) = (None, String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().parse::<i64>().expect("a numeric event id"));
                } else if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            // A block of comments only is the keep-alive.
            if data.is_empty() {
                continue;
            }
            assert_ne!(name, "error", "the stream failed: {data}");
            events.push(SseEvent {
                id: id.expect("every event has an id"),
                name,
                data: serde_json::from_str(&data).expect("the data is JSON"),
            });
            if limit.is_some_and(|l| events.len() >= l) {
                return (events, false);
            }
        }
        match r.chunk().await.expect("the stream reads") {
            Some(bytes) => buf.push_str(std::str::from_utf8(&bytes).unwrap()),
            None => return (events, true),
        }
    }
}

/// Reads a stream in two connections, the first dropped after `cut` events and the
/// second resumed with `Last-Event-ID`, then once more from the start; asserts the two
/// halves make the whole, with ids that only grow, and returns the whole.
async fn resumed_equals_whole(
    server: &Server,
    path: &str,
    token: &str,
    cut: usize,
) -> Vec<SseEvent> {
    let (first, ended) = read_events(server, path, token, None, Some(cut)).await;
    assert!(!ended && first.len() == cut, "{path}: {first:#?}");
    let last = first.last().unwrap().id;
    let (rest, ended) = read_events(server, path, token, Some(last), None).await;
    assert!(ended, "{path}: the stream ends when it is settled");
    let (whole, ended) = read_events(server, path, token, None, None).await;
    assert!(ended);
    let joined: Vec<SseEvent> = first.into_iter().chain(rest).collect();
    assert_eq!(joined, whole, "{path}: resumed, a gap or a repeat");
    assert!(
        whole.windows(2).all(|w| w[0].id < w[1].id),
        "{path}: ids do not grow: {whole:#?}"
    );
    // Resuming after the last event of a settled stream gives nothing and ends.
    let (none, ended) =
        read_events(server, path, token, Some(whole.last().unwrap().id), None).await;
    assert!(ended && none.is_empty(), "{none:#?}");
    whole
}

/// A request followed over SSE until its tenant is active, and its provisioning run's
/// steps, each stream read in two connections (the first dropped mid-stream, the second
/// resumed with Last-Event-ID) and compared with the whole; who may follow what.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_resume_after_a_dropped_connection_without_gaps_or_repeats() {
    bounded(async {
        let ws = Workspace::new(&[]).await;
        let server = start_server(&ws).await;
        let alice = token(&ws, "alice@example.com", "requester", "requests:submit");
        let bob = token(&ws, "bob@example.com", "requester", "requests:submit");
        let viewer = token(&ws, "viewer", "requester", "tenants:read");
        let t = bronze("ev");
        let a = server.post("/v1/requests", &alice, request_body(&t)).await;
        assert_eq!(a.status, StatusCode::CREATED, "{:#}", a.body);
        let run = a.body["run"]["id"]
            .as_str()
            .expect("a provisioning run")
            .to_owned();
        let request_path = format!("/v1/requests/{}/events", t.id);
        let run_path = format!("/v1/runs/{run}/events");

        // Followed while it runs: the first connection drops after three steps.
        let steps = resumed_equals_whole(&server, &run_path, &viewer, 3).await;
        let names: Vec<&str> = steps.iter().map(|e| e.name.as_str()).collect();
        assert!(
            names.contains(&"started") && names.contains(&"finished"),
            "{names:?}"
        );
        assert!(
            steps.iter().all(|e| e.data["run_id"] == run.as_str()),
            "{steps:#?}"
        );
        let end = steps.last().unwrap();
        assert_eq!(
            (end.name.as_str(), &end.data["detail"]["to"]),
            ("status", &json!("applied")),
            "{end:#?}"
        );
        let resources = steps
            .iter()
            .filter(|e| e.name == "finished" && e.data["address"].is_string())
            .count();
        assert!(
            resources >= PER_TENANT,
            "{resources} resources finished: {names:?}"
        );

        let lifecycle = resumed_equals_whole(&server, &request_path, &alice, 1).await;
        assert_eq!(lifecycle[0].name, "submitted", "{lifecycle:#?}");
        let moves: Vec<&str> = lifecycle
            .iter()
            .filter_map(|e| e.data["to_status"].as_str())
            .collect();
        assert_eq!(moves.last(), Some(&"active"), "{lifecycle:#?}");
        assert!(moves.contains(&"provisioning"), "{moves:?}");

        // Who may follow what, and a bad resume point.
        assert_error_shape(
            &server.get(&request_path, &bob).await,
            StatusCode::NOT_FOUND,
            "another's request's events",
        );
        let a = server.call(Method::GET, &run_path, None, None, None).await;
        assert_error_shape(&a, StatusCode::UNAUTHORIZED, "events without a token");
        let a = server
            .get(
                "/v1/runs/00000000-0000-0000-0000-000000000000/events",
                &viewer,
            )
            .await;
        assert_error_shape(&a, StatusCode::NOT_FOUND, "an unknown run's events");
        let r = server
            .http
            .get(server.url(&run_path))
            .bearer_auth(&viewer)
            .header("Last-Event-ID", "yesterday")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Last-Event-ID"),
            "{body:#}"
        );
    })
    .await;
}

/// What the test's webhook receiver got: path, event, delivery id, signature header,
/// body, and the status it answered.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    event: String,
    delivery: String,
    signature: String,
    body: Vec<u8>,
    answered: u16,
}

/// A webhook receiver on a free loopback port: answers its first request 500 and every
/// later one 200, and keeps what it got.
async fn webhook_receiver() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    tokio::task::JoinHandle<()>,
) {
    use axum::http::{HeaderMap, Uri};
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Received>::new()));
    let kept = got.clone();
    let app = axum::Router::new().fallback(
        move |uri: Uri, headers: HeaderMap, body: axum::body::Bytes| {
            let got = kept.clone();
            async move {
                let mut got = got.lock().unwrap();
                let answered = if got.is_empty() { 500 } else { 200 };
                let header = |n: &str| {
                    headers
                        .get(n)
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default()
                };
                got.push(Received {
                    path: uri.path().to_owned(),
                    event: header("x-tenantform-event"),
                    delivery: header("x-tenantform-delivery"),
                    signature: header("x-tenantform-signature"),
                    body: body.to_vec(),
                    answered,
                });
                axum::http::StatusCode::from_u16(answered).unwrap()
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (base, got, task)
}

/// Two `[[webhooks]]` (one for every event, one for `run.applied` only) against a real
/// receiver that answers 500 first: the failed delivery is retried and delivered, every
/// attempt is recorded, every POST is signed with the secret (and fails verification
/// under another), and the filter holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_after_a_500_and_recorded() {
    bounded(async {
        const HOOK_SECRET: &str = "webhook-test-secret-7f3a9c";
        let (receiver, got, _receiver_task) = webhook_receiver().await;
        let t = bronze("wh");
        let ws = Workspace::new(std::slice::from_ref(&t)).await;
        ws.edit_platform(|s| {
            format!(
                "{s}\n[[webhooks]]\nurl = \"{receiver}/hooks/all\"\nsecret_env = \"TEST_WEBHOOK_SECRET\"\n\n\
                 [[webhooks]]\nurl = \"{receiver}/hooks/applied\"\nsecret_env = \"TEST_WEBHOOK_SECRET\"\nevents = [\"run.applied\"]\n"
            )
        });
        let server = start_server_with(
            &ws,
            &[
                ("TENANTFORM_JWT_SECRET", SECRET),
                ("TEST_WEBHOOK_SECRET", HOOK_SECRET),
            ],
        )
        .await;
        let admin = token(&ws, "admin", "platform-admin", ALL_SCOPES);
        let a = server
            .post(
                &format!("/v1/tenants/{}/runs", t.id),
                &admin,
                json!({"operation": "apply"}),
            )
            .await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{:#}", a.body);
        let run = a.body["id"].as_str().unwrap().to_owned();
        server.wait_for_run(&run, &admin, &["planned"]).await;
        server.apply_planned(&run, &admin).await;

        // run.created, run.needs_approval, run.applied; run.applied again to the other
        // hook; the first of them answered 500 and sent again.
        let t0 = Instant::now();
        let received = loop {
            let now = got.lock().unwrap().clone();
            let oks = now.iter().filter(|r| r.answered == 200).count();
            if oks >= 4 {
                break now;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the webhooks did not arrive: {now:#?}\n{}",
                std::fs::read_to_string(ws.dir.path().join("serve.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        for r in &received {
            assert!(
                tenantform::server::webhooks::verify_signature(
                    HOOK_SECRET.as_bytes(),
                    &r.signature,
                    &r.body
                ),
                "a POST not signed with the secret: {r:?}"
            );
            assert!(
                !tenantform::server::webhooks::verify_signature(
                    b"not-the-secret",
                    &r.signature,
                    &r.body
                ),
                "verified under a wrong secret: {r:?}"
            );
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["type"], r.event.as_str(), "{body:#}");
            assert_eq!(body["data"]["run"]["id"], run.as_str(), "{body:#}");
        }
        let at = |path: &str| -> Vec<&str> {
            received
                .iter()
                .filter(|r| r.path == path && r.answered == 200)
                .map(|r| r.event.as_str())
                .collect()
        };
        assert_eq!(at("/hooks/applied"), ["run.applied"], "{received:#?}");
        let mut all = at("/hooks/all");
        all.sort_unstable();
        assert_eq!(
            all,
            ["run.applied", "run.created", "run.needs_approval"],
            "{received:#?}"
        );

        // The first POST got a 500; the same delivery came again and got a 200.
        let failed = &received[0];
        assert_eq!(failed.answered, 500);
        assert!(
            received[1..]
                .iter()
                .any(|r| r.delivery == failed.delivery && r.answered == 200),
            "no retry of delivery {}: {received:#?}",
            failed.delivery
        );
        let db = ws.admin().await;
        let delivery: i64 = failed.delivery.parse().unwrap();
        let attempts: Vec<(i32, Option<i32>)> = db
            .query(
                "SELECT attempt, status_code FROM tenantform.webhook_attempts \
                 WHERE delivery_id = $1 ORDER BY attempt",
                &[&delivery],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(attempts, [(1, Some(500)), (2, Some(200))]);
        let statuses: Vec<String> = db
            .query(
                "SELECT status FROM tenantform.webhook_deliveries ORDER BY id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(statuses, ["delivered"; 4], "every delivery was delivered");
        let log = std::fs::read_to_string(ws.dir.path().join("serve.log")).unwrap();
        assert!(!log.contains(HOOK_SECRET), "the webhook secret in the log");
    })
    .await;
}

/// `GET /openapi.json` (no token) is the document kept in `docs/openapi.json`, with a
/// bearer JWT scheme and every `/v1` route; `UPDATE_OPENAPI=1` rewrites the copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_openapi_document_is_the_stored_copy() {
    bounded(async {
        let ws = Workspace::new(&[]).await;
        let server = start_server(&ws).await;
        let r = server.http.get(server.url("/openapi.json")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let served: Value = r.json().await.unwrap();
        assert_eq!(
            served["components"]["securitySchemes"]["bearer"],
            json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                   "description": served["components"]["securitySchemes"]["bearer"]["description"]}),
        );
        let paths = served["paths"].as_object().unwrap();
        for p in [
            "/v1/tenants",
            "/v1/tenants/{id}/runs",
            "/v1/runs/{id}/events",
            "/v1/requests/{id}/approvals",
            "/v1/requests/{id}/events",
        ] {
            assert!(paths.contains_key(p), "{p} is not in the document");
        }
        let stored_path = repo().join("docs/openapi.json");
        let text = serde_json::to_string_pretty(&served).unwrap() + "\n";
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&stored_path, &text).unwrap();
        }
        let stored: Value = serde_json::from_str(
            &std::fs::read_to_string(&stored_path).unwrap_or_default(),
        )
        .unwrap_or(Value::Null);
        assert!(
            stored == served,
            "docs/openapi.json is not the document the server serves; the API changed: \
             regenerate it with `UPDATE_OPENAPI=1 scripts/test -E 'test(openapi)'` and commit it"
        );
    })
    .await;
}
