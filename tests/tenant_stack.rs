//! The rest of a tenant's stack against the real services: its Redis ACL user, its
//! pgvector namespace, its Grafana dashboard (file and HTTP API), tier changes,
//! data residency and cost in the plan.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use support::*;

fn redis_code(e: &redis::RedisError) -> String {
    e.code().unwrap_or("").to_owned()
}

#[tokio::test]
async fn the_redis_user_is_confined_to_its_own_keys() {
    let a = TenantDef::new("rds-a", "bronze");
    let b = TenantDef::new("rds-b", "silver");
    let ws = Workspace::new(&[a.clone(), b.clone()]).await;
    ws.run(&["apply", "--auto-approve"]).ok();

    let mut ra = ws
        .tenant_redis(&a)
        .await
        .expect("tenant a logs in with its password");
    let own = format!("tenant:{}:greeting", a.id);
    redis_cmd(&mut ra, &["SET", &own, "hello"]).await.unwrap();
    let v: redis::Value = redis_cmd(&mut ra, &["GET", &own]).await.unwrap();
    assert_eq!(v, redis::Value::BulkString(b"hello".to_vec()));

    let mut admin = redis_admin().await;
    let theirs = format!("tenant:{}:secret", b.id);
    redis_cmd(&mut admin, &["SET", &theirs, "b's data"])
        .await
        .unwrap();
    for words in [
        vec!["GET", theirs.as_str()],
        vec!["SET", theirs.as_str(), "overwritten"],
        vec!["DEL", theirs.as_str()],
        vec!["SET", "unprefixed", "x"],
        vec!["FLUSHALL"],
        vec!["FLUSHDB"],
        vec!["KEYS", "*"],
        vec!["SCAN", "0"],
        vec!["CONFIG", "GET", "requirepass"],
        vec!["ACL", "LIST"],
        vec!["EVAL", "return 1", "0"],
    ] {
        let err = redis_cmd(&mut ra, &words)
            .await
            .expect_err(&format!("{words:?} must be refused"));
        assert_eq!(redis_code(&err), "NOPERM", "{words:?}: {err}");
    }
    let v: redis::Value = redis_cmd(&mut admin, &["GET", &theirs]).await.unwrap();
    assert_eq!(
        v,
        redis::Value::BulkString(b"b's data".to_vec()),
        "b's key untouched"
    );
    assert!(redis_as(&a.pg_name(), "wrong-password").await.is_err());

    // The password is only in the credentials secret: not in state, plan, apply or
    // show output.
    let pw = ws.redis_password(&a.id).await;
    let pw = pw.as_str();
    assert!(!ws.state_json(&a.id).unwrap().to_string().contains(pw));
    let show = ws.run(&["show", "--tenant", &a.id]).ok();
    assert!(!show.all().contains(pw), "{}", show.all());
    assert!(
        show.stdout.lines().any(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words == ["redis_user", "=", a.pg_name().as_str()]
        }),
        "{}",
        show.stdout
    );
    let show = ws
        .run(&["show", "--tenant", &a.id, "--show-secrets", "--json"])
        .ok();
    assert!(!show.all().contains(pw), "{}", show.all());
    let v: Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(
        v["tenants"][0]["outputs"]["credentials_secret_name"],
        credentials_secret_of(&a)
    );

    // Drift: a permission granted by hand is planned away and removed by apply.
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
    redis_cmd(&mut admin, &["ACL", "SETUSER", &a.pg_name(), "+flushall"])
        .await
        .unwrap();
    let plan = ws.run(&["plan", "--detailed-exitcode"]).code(2);
    assert!(
        plan.stdout.contains("~ redis_acl_user.app"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("(changed outside tenantform)"),
        "{}",
        plan.stdout
    );
    ws.run(&["apply", "--auto-approve"]).ok();
    let mut ra = ws
        .tenant_redis(&a)
        .await
        .expect("same password after the repair");
    assert_eq!(
        redis_code(&redis_cmd(&mut ra, &["FLUSHALL"]).await.unwrap_err()),
        "NOPERM"
    );

    // A user deleted behind the engine's back is re-created.
    redis_cmd(&mut admin, &["ACL", "DELUSER", &a.pg_name()])
        .await
        .unwrap();
    ws.run(&["plan", "--detailed-exitcode"])
        .code(2)
        .contains("deleted outside tenantform");
    ws.run(&["apply", "--auto-approve"]).ok();
    ws.tenant_redis(&a).await.expect("re-created user logs in");

    ws.run(&["destroy", "--tenant", &a.id, "--auto-approve"])
        .ok();
    let gone: redis::Value = redis_cmd(&mut admin, &["ACL", "GETUSER", &a.pg_name()])
        .await
        .unwrap();
    assert_eq!(gone, redis::Value::Nil, "destroy removes the user");
    let kept: redis::Value = redis_cmd(&mut admin, &["ACL", "GETUSER", &b.pg_name()])
        .await
        .unwrap();
    assert_ne!(kept, redis::Value::Nil, "the other tenant's user stays");
}

#[tokio::test]
async fn nearest_neighbours_come_from_the_tenants_own_vector_table_only() {
    let a = TenantDef::new("vec-a", "gold");
    let b = TenantDef::new("vec-b", "bronze");
    let ws = Workspace::new(&[a.clone(), b.clone()]).await;
    ws.edit_platform(|p| p.replace("dimension = 1536", "dimension = 3"));
    ws.run(&["apply", "--auto-approve"]).ok();

    let ca = ws.tenant_client(&a).await.unwrap();
    ca.batch_execute(
        "INSERT INTO embeddings (chunk, embedding) VALUES \
         ('east', '[1,0,0]'), ('north', '[0,1,0]'), ('up', '[0,0,1]')",
    )
    .await
    .unwrap();
    let row = ca
        .query_one(
            "SELECT chunk FROM embeddings ORDER BY embedding <=> $1::text::vector LIMIT 1",
            &[&"[0.1,0.9,0.05]"],
        )
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(row.get::<_, String>(0), "north");
    let err = ca
        .execute("INSERT INTO embeddings (embedding) VALUES ('[1,2]')", &[])
        .await
        .unwrap_err();
    let message = err
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    assert!(message.contains("expected 3 dimensions"), "{err:?}");

    let admin = ws.admin().await;
    let index: String = admin
        .query_one(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'embeddings' AND indexname = 'embeddings_embedding_hnsw'",
            &[&a.pg_name()],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        index.contains("USING hnsw (embedding vector_cosine_ops)"),
        "{index}"
    );

    let cb = ws.tenant_client(&b).await.unwrap();
    let err = cb
        .query(
            &format!("SELECT chunk FROM {}.embeddings", a.pg_name()),
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42501", "{err}");
    let n: i64 = cb
        .query_one("SELECT count(*) FROM embeddings", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "b sees its own, empty table");

    // A change of distance rebuilds the index in place and keeps the embeddings.
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
    ws.edit_platform(|p| p.replace("distance = \"cosine\"", "distance = \"l2\""));
    let plan = ws.run(&["plan", "--detailed-exitcode"]).code(2);
    assert!(
        plan.stdout.contains("distance = \"cosine\" -> \"l2\""),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("Plan: 0 to add, 2 to change, 0 to destroy."),
        "{}",
        plan.stdout
    );
    ws.run(&["apply", "--auto-approve"]).ok();
    let n: i64 = ca
        .query_one("SELECT count(*) FROM embeddings", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
}

fn read_dashboard(ws: &Workspace, t: &TenantDef) -> Value {
    let path = ws.dashboards().join(format!("tenant-{}.json", t.id));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).expect("the dashboard file is JSON")
}

#[tokio::test]
async fn the_dashboard_file_is_grafana_json_filtered_by_tenant() {
    let t = TenantDef::new("dash", "silver");
    let other = TenantDef::new("dash-other", "bronze");
    let ws = Workspace::new(&[t.clone(), other.clone()]).await;
    ws.run(&["apply", "--auto-approve"]).ok();

    let d = read_dashboard(&ws, &t);
    assert_eq!(d["uid"], format!("tenant-{}", t.id));
    assert!(d["id"].is_null(), "file-provisioned dashboards carry no id");
    assert!(d["schemaVersion"].as_u64().unwrap() >= 30);
    let titles: Vec<&str> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "Query latency p95",
            "Query rate",
            "Error rate",
            "Document count"
        ]
    );
    for p in d["panels"].as_array().unwrap() {
        assert_eq!(p["datasource"]["uid"], "prometheus");
        for target in p["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            assert!(expr.contains(&format!("tenant=\"{}\"", t.id)), "{expr}");
            assert!(!expr.contains(&other.id), "{expr}");
        }
    }
    let latency = &d["panels"][0]["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"];
    assert_eq!(latency, 1000, "silver's SLA line");
    assert!(
        d["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("tier:silver"))
    );

    // A panel edited by hand is drift, and apply writes the file again.
    let path = ws.dashboards().join(format!("tenant-{}.json", t.id));
    let mut edited = d.clone();
    edited["panels"][1]["targets"][0]["expr"] = json!("sum(rate(rag_queries_total[5m]))");
    std::fs::write(&path, serde_json::to_vec(&edited).unwrap()).unwrap();
    let plan = ws.run(&["plan", "--detailed-exitcode"]).code(2);
    assert!(
        plan.stdout.contains("~ grafana_dashboard.main"),
        "{}",
        plan.stdout
    );
    ws.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(read_dashboard(&ws, &t), d);

    // Removing the tenant removes its dashboard and nothing else's.
    ws.remove_tenant_spec(&t.id);
    ws.run(&["apply", "--auto-approve"]).ok();
    assert!(
        !path.exists(),
        "the dashboard file is removed with the tenant"
    );
    assert!(
        ws.dashboards()
            .join(format!("tenant-{}.json", other.id))
            .exists()
    );
}

/// A stand-in for Grafana's dashboard API: keeps uploaded dashboards by uid and
/// records the requests, checking the bearer token.
async fn grafana_stub(token: &'static str) -> (String, Arc<Mutex<BTreeMap<String, Value>>>) {
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};
    use axum::{Json, Router};

    type Store = Arc<Mutex<BTreeMap<String, Value>>>;
    let store: Store = Arc::default();
    let authorized = move |h: &HeaderMap| {
        h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {token}"))
    };
    let app = Router::new()
        .route(
            "/api/dashboards/db",
            post(
                move |State(s): State<Store>, h: HeaderMap, Json(body): Json<Value>| async move {
                    if !authorized(&h) {
                        return (
                            StatusCode::UNAUTHORIZED,
                            Json(json!({"message": "Unauthorized"})),
                        );
                    }
                    let uid = body["dashboard"]["uid"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    s.lock()
                        .unwrap()
                        .insert(uid.clone(), body["dashboard"].clone());
                    (
                        StatusCode::OK,
                        Json(json!({"status": "success", "uid": uid, "version": 1})),
                    )
                },
            ),
        )
        .route(
            "/api/dashboards/uid/{uid}",
            get(
                |State(s): State<Store>, Path(uid): Path<String>| async move {
                    match s.lock().unwrap().get(&uid) {
                        Some(d) => (StatusCode::OK, Json(json!({"dashboard": d, "meta": {}}))),
                        None => (
                            StatusCode::NOT_FOUND,
                            Json(json!({"message": "Dashboard not found"})),
                        ),
                    }
                },
            )
            .delete(
                |State(s): State<Store>, Path(uid): Path<String>| async move {
                    match s.lock().unwrap().remove(&uid) {
                        Some(_) => (StatusCode::OK, Json(json!({"title": uid}))),
                        None => (
                            StatusCode::NOT_FOUND,
                            Json(json!({"message": "Dashboard not found"})),
                        ),
                    }
                },
            ),
        )
        .with_state(store.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, store)
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_grafana_url_the_dashboard_goes_through_the_http_api_too() {
    let t = TenantDef::new("graf", "gold");
    let mut ws = Workspace::new(std::slice::from_ref(&t)).await;
    let (url, store) = grafana_stub("glsa_test_token").await;
    ws.edit_platform(|p| {
        p.replace(
            "# grafana_url = \"http://127.0.0.1:3000\"",
            &format!("grafana_url = \"{url}\""),
        )
    });
    ws.set_env("GRAFANA_TOKEN", "glsa_test_token");
    let uid = format!("tenant-{}", t.id);

    ws.run(&["apply", "--auto-approve"]).ok();
    let uploaded = store.lock().unwrap().get(&uid).cloned().expect("uploaded");
    assert_eq!(
        uploaded,
        read_dashboard(&ws, &t),
        "file and API carry the same dashboard"
    );
    let show = ws.run(&["show", "--tenant", &t.id]).ok();
    assert!(
        show.stdout.contains(&format!("{url}/d/{uid}")),
        "{}",
        show.stdout
    );

    // Deleted in Grafana: drift, re-uploaded by apply.
    store.lock().unwrap().clear();
    ws.run(&["plan", "--detailed-exitcode"])
        .code(2)
        .contains("~ grafana_dashboard.main")
        .contains(&format!("grafana_url = null -> \"{url}\""));
    ws.run(&["apply", "--auto-approve"]).ok();
    assert!(store.lock().unwrap().contains_key(&uid));

    ws.run(&["destroy", "--auto-approve"]).ok();
    assert!(
        store.lock().unwrap().is_empty(),
        "destroy removes it from Grafana"
    );

    // A wrong token is a clear error, not a silent skip.
    ws.set_env("GRAFANA_TOKEN", "wrong");
    let run = ws.run(&["apply", "--auto-approve"]).code(1);
    assert!(
        run.all()
            .contains("Grafana refused the request (401): Unauthorized"),
        "{}",
        run.all()
    );
}

#[tokio::test]
async fn a_bronze_to_gold_upgrade_plans_exactly_the_tier_dependent_updates() {
    let mut t = TenantDef::new("tier", "bronze");
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    ws.run(&["apply", "--auto-approve"]).ok();

    t.tier = "gold".into();
    ws.write_tenant(&t);
    let plan = ws.run(&["plan", "--json", "--detailed-exitcode"]).code(2);
    let v: Value = serde_json::from_str(&plan.stdout).unwrap();
    let changed: BTreeMap<String, (Value, Value)> = v["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["change"]["actions"] != json!(["no-op"]))
        .map(|c| {
            (
                c["address"]
                    .as_str()
                    .unwrap()
                    .split_once('/')
                    .unwrap()
                    .1
                    .to_owned(),
                (
                    c["change"]["actions"].clone(),
                    c["changed_attributes"].clone(),
                ),
            )
        })
        .collect();
    let update = |attrs: Value| (json!(["update"]), attrs);
    assert_eq!(
        changed,
        BTreeMap::from([
            (
                "elasticache_cluster.cache".to_owned(),
                (
                    json!(["create"]),
                    json!([
                        "cluster_id",
                        "engine",
                        "node_type",
                        "num_nodes",
                        "region",
                        "tags"
                    ])
                )
            ),
            (
                "grafana_dashboard.main".to_owned(),
                update(json!(["tags", "sla_latency_ms"]))
            ),
            (
                "iam_policy.documents_access".to_owned(),
                update(json!(["tags"]))
            ),
            ("iam_role.app".to_owned(), update(json!(["tags"]))),
            (
                "s3_bucket.documents".to_owned(),
                update(json!(["lifecycle_rules", "tags"]))
            ),
            (
                "postgres_role.app".to_owned(),
                update(json!(["connection_limit"]))
            ),
            ("secret.credentials".to_owned(), update(json!(["tags"]))),
            (
                "tenant_settings.main".to_owned(),
                update(json!([
                    "tier",
                    "sla_latency_ms",
                    "features",
                    "queries_per_minute",
                    "documents_per_month",
                    "llm_model",
                    "llm_max_tokens",
                    "demo_documents",
                    "vector_replicas",
                    "dedicated_cache"
                ]))
            ),
        ])
    );
    assert_eq!(v["summary"], json!({"add": 1, "change": 7, "destroy": 0}));
    let cost = &v["tenants"][0]["cost"];
    assert_eq!(
        (
            cost["before_monthly_inr"].clone(),
            cost["monthly_inr"].clone()
        ),
        (json!(17000.0), json!(148000.0))
    );

    let human = ws.run(&["plan"]).ok();
    assert!(
        human.stdout.contains("queries_per_minute  = 100 -> 1000"),
        "{}",
        human.stdout
    );
    assert!(
        human
            .stdout
            .contains("llm_model           = \"gpt-4o-mini\" -> \"gpt-4o\""),
        "{}",
        human.stdout
    );
    assert!(
        human
            .stdout
            .contains("Estimated cost: ₹1,48,000/month (was ₹17,000/month)"),
        "{}",
        human.stdout
    );

    ws.run(&["apply", "--auto-approve"])
        .ok()
        .contains("1 added, 7 changed, 0 destroyed");
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
    let settings: Value = ws
        .admin()
        .await
        .query_one(
            "SELECT settings FROM tenantform.tenant_settings WHERE tenant = $1",
            &[&t.id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(settings["tier"], "gold");
    assert_eq!(settings["queries_per_minute"], 1000);
    assert_eq!(settings["documents_per_month"], 100_000);
    assert_eq!(settings["llm_max_tokens"], 8192);
    assert_eq!(
        settings["features"],
        json!({"advanced_search": true, "realtime_indexing": true, "custom_models": true})
    );
    assert_eq!(settings["demo_documents"], true);
    assert_eq!(settings["vector_replicas"], 3);
    let d = read_dashboard(&ws, &t);
    assert_eq!(
        d["panels"][0]["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"],
        500
    );
}

#[tokio::test]
async fn residency_violations_and_unknown_classifications_are_plan_errors() {
    let ok = TenantDef::new("res-ok", "silver");
    let ws = Workspace::new(std::slice::from_ref(&ok)).await;
    ws.run(&["apply", "--auto-approve"]).ok();
    let state_before = std::fs::read(ws.state_file(&ok.id)).unwrap();

    let mut eu = TenantDef::new("res-eu", "silver");
    eu.classification = "eu-personal".into();
    eu.region = "us-east-1".into();
    ws.write_tenant(&eu);
    let run = ws.run(&["plan"]).code(1);
    let all = run.all();
    assert!(
        all.contains(&format!("specs/tenants/{}.toml:4:", eu.id)),
        "{all}"
    );
    assert!(all.contains("field `region`"), "{all}");
    assert!(
        all.contains("personal data of EU residents stays in EU regions (GDPR)"),
        "{all}"
    );
    assert!(
        all.contains("choose a region in eu-central-1, eu-west-1"),
        "{all}"
    );
    assert!(all.contains("nothing was changed"), "{all}");
    ws.run(&["apply", "--auto-approve"]).code(1);

    let mut india = TenantDef::new("res-in", "bronze");
    india.classification = "india-resident".into();
    india.region = "eu-west-1".into();
    ws.write_tenant(&india);
    let run = ws.run(&["plan"]).code(1);
    assert!(
        run.all()
            .contains("India-resident data stays in Indian regions (DPDP Act)"),
        "{}",
        run.all()
    );
    ws.remove_tenant_spec(&india.id);

    let mut unknown = TenantDef::new("res-unk", "bronze");
    unknown.classification = "top-secret".into();
    ws.write_tenant(&unknown);
    let run = ws.run(&["plan"]).code(1);
    let all = run.all();
    assert!(
        all.contains("field `data_classification`: unknown data classification \"top-secret\""),
        "{all}"
    );
    assert!(
        all.contains("use one of: confidential, eu-personal, india-resident, internal, phi"),
        "{all}"
    );

    // Nothing was changed anywhere: no state for the refused tenants, the applied
    // tenant's state untouched, no schema or Redis user created.
    for t in [&eu, &unknown] {
        assert!(!ws.state_file(&t.id).exists());
        let n: i64 = ws
            .admin()
            .await
            .query_one(
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
                &[&t.pg_name()],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0);
    }
    assert_eq!(std::fs::read(ws.state_file(&ok.id)).unwrap(), state_before);

    // Moving an applied tenant out of its jurisdiction is refused the same way.
    ws.remove_tenant_spec(&eu.id);
    ws.remove_tenant_spec(&unknown.id);
    let mut moved = ok.clone();
    moved.classification = "eu-personal".into();
    moved.region = "eu-west-1".into();
    ws.write_tenant(&moved);
    // Allowed: the plan moves the bucket to the new region (a replacement).
    ws.run(&["plan", "--detailed-exitcode"])
        .code(2)
        .contains("-/+ s3_bucket.documents");
    moved.region = "ap-south-1".into();
    ws.write_tenant(&moved);
    ws.run(&["apply", "--auto-approve"])
        .code(1)
        .contains("(GDPR)");
    assert_eq!(std::fs::read(ws.state_file(&ok.id)).unwrap(), state_before);
}

#[tokio::test]
async fn the_plan_shows_each_tenants_cost_the_total_and_budget_warnings() {
    let mut gold = TenantDef::new("cost-g", "gold");
    gold.budget_inr = 1_500_000;
    let mut silver = TenantDef::new("cost-s", "silver");
    silver.region = "eu-west-1".into();
    let mut bronze = TenantDef::new("cost-b", "bronze");
    bronze.region = "ap-south-1".into();
    let ws = Workspace::new(&[gold.clone(), silver.clone(), bronze.clone()]).await;

    let v: Value = serde_json::from_str(&ws.run(&["plan", "--json"]).ok().stdout).unwrap();
    let cost_of = |id: &str| {
        v["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["tenant"] == id)
            .unwrap()["cost"]
            .clone()
    };
    // Catalog sums (postgres + storage + cache + vector + monitoring) times the region.
    let g = cost_of(&gold.id);
    assert_eq!(g["monthly_inr"], 148_000.0);
    assert_eq!(g["region_multiplier"], 1.0);
    assert_eq!(g["components"]["cache"], 60_000.0);
    let s = cost_of(&silver.id);
    assert_eq!(s["monthly_inr"], 56_400.0);
    assert_eq!(s["region_multiplier"], 1.2);
    assert_eq!(s["components"]["vector"], 14_400.0);
    let b = cost_of(&bronze.id);
    assert_eq!(b["monthly_inr"], 15_300.0);
    assert_eq!(b["components"]["postgres"], 7_200.0);
    assert_eq!(
        v["cost"],
        json!({"currency": "INR", "monthly_inr": 219_700.0})
    );
    assert_eq!(v["warnings"], json!([]));
    for c in [&g, &s, &b] {
        assert_eq!(c["over_budget"], false);
    }

    let human = ws.run(&["plan"]).ok();
    assert!(
        human.stdout.contains(
            "Estimated cost: ₹1,48,000/month (gold in us-east-1 at 1x; budget ₹15,00,000)"
        ),
        "{}",
        human.stdout
    );
    assert!(
        human
            .stdout
            .contains("Estimated cost: ₹56,400/month (silver in eu-west-1 at 1.2x"),
        "{}",
        human.stdout
    );
    assert!(
        human
            .stdout
            .contains("Estimated monthly cost of the tenants in this plan: ₹2,19,700."),
        "{}",
        human.stdout
    );
    assert!(!human.stdout.contains("Warning"), "{}", human.stdout);
    let md = ws.run(&["plan", "--markdown"]).ok();
    assert!(
        md.stdout.contains(&format!(
            "| `{}` | bronze | ap-south-1 | {PER_TENANT} | 0 | 0 | ₹15,300 | new tenant |",
            bronze.id
        )),
        "{}",
        md.stdout
    );
    assert!(
        md.stdout
            .contains("Estimated monthly cost of these tenants: **₹2,19,700**"),
        "{}",
        md.stdout
    );

    // Over budget: a warning in every format; the plan itself still succeeds.
    gold.budget_inr = 100_000;
    ws.write_tenant(&gold);
    let warning = format!(
        "tenant {}: the estimated cost of ₹1,48,000/month exceeds its budget of ₹1,00,000 by ₹48,000",
        gold.id
    );
    ws.run(&["plan"])
        .ok()
        .contains(&format!("Warning: {warning}"));
    let v: Value = serde_json::from_str(&ws.run(&["plan", "--json"]).ok().stdout).unwrap();
    assert!(
        v["warnings"][0].as_str().unwrap().starts_with(&warning),
        "{}",
        v["warnings"]
    );
    let md = ws.run(&["plan", "--markdown"]).ok();
    assert!(
        md.stdout.contains(&format!("> **Warning:** {warning}")),
        "{}",
        md.stdout
    );
    assert!(
        md.stdout.contains("new tenant, over budget"),
        "{}",
        md.stdout
    );
}
