//! Drift detection, refresh and import against a real PostgreSQL: every resource kind
//! changed or deleted out of band, reported precisely, repaired by apply or accepted by
//! refresh; hand-made objects adopted by import.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use serde_json::Value;
use support::*;

fn drift_json(ws: &Workspace, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["drift", "--json", "--detailed-exitcode"];
    args.extend_from_slice(extra);
    let run = ws.run(&args);
    assert!(
        run.code == 0 || run.code == 2,
        "drift failed:\n{}",
        run.all()
    );
    // One message per line: version first, a resource_drift per drifted resource,
    // the summary, and the report last.
    let messages: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let types: Vec<&str> = messages
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"version"), "{types:?}");
    assert_eq!(types.last(), Some(&"drift_report"), "{types:?}");
    let v = messages.last().unwrap()["report"].clone();
    let drifted: Vec<&Value> = v["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["drift"].as_array().unwrap())
        .collect();
    let streamed: Vec<&Value> = messages
        .iter()
        .filter(|m| m["type"] == "resource_drift")
        .collect();
    assert_eq!(streamed.len(), drifted.len(), "{}", run.stdout);
    for (m, d) in streamed.iter().zip(&drifted) {
        assert_eq!(m["change"]["resource"]["addr"], d["address"]);
    }
    let summary = messages
        .iter()
        .find(|m| m["type"] == "drift_summary")
        .unwrap();
    assert_eq!(
        summary["drift"]["tenants_with_drift"].as_u64() == Some(0),
        run.code == 0,
        "{summary}"
    );
    (run.code, v)
}

fn tenant_entry<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == id)
        .unwrap_or_else(|| panic!("{id} in the report"))
}

/// (address, kind, attribute names) of a tenant's findings.
fn findings(report: &Value, id: &str) -> Vec<(String, String, Vec<String>)> {
    tenant_entry(report, id)["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["address"].as_str().unwrap().to_owned(),
                d["kind"].as_str().unwrap().to_owned(),
                d["attributes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["name"].as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

/// The drift report read one resource at a time (`--bulk-read never`) and in bulk
/// (`always`): the same, byte for byte, in the JSON form (its creation time left out)
/// and the human one, with the same exit code. Returns the bulk report.
fn assert_bulk_and_per_resource_agree(ws: &Workspace) -> Value {
    let without_time = |mut v: Value| {
        v.as_object_mut().unwrap().remove("created_at");
        serde_json::to_string_pretty(&v).unwrap()
    };
    let (each_code, each) = drift_json(ws, &["--bulk-read", "never"]);
    let (bulk_code, bulk) = drift_json(ws, &["--bulk-read", "always"]);
    assert_eq!(bulk_code, each_code);
    assert_eq!(without_time(bulk.clone()), without_time(each));
    let each = ws.run(&["drift", "--bulk-read", "never"]);
    let in_bulk = ws.run(&["drift", "--bulk-read", "always"]);
    assert_eq!(in_bulk.code, each.code, "{}", in_bulk.all());
    assert_eq!(in_bulk.stdout, each.stdout);
    assert_eq!(in_bulk.stderr, each.stderr);
    bulk
}

fn state_bytes(ws: &Workspace, tenants: &[TenantDef]) -> BTreeMap<String, Vec<u8>> {
    tenants
        .iter()
        .map(|t| (t.id.clone(), fs::read(ws.state_file(&t.id)).unwrap()))
        .collect()
}

/// Right after an apply, a drift run finds nothing; then every resource kind changed
/// and deleted out of band is reported as such, with before -> after; the run changes
/// nothing; apply repairs all of it.
#[tokio::test]
async fn every_kind_changed_or_deleted_out_of_band_is_reported_and_apply_repairs_it() {
    // (tenant prefix, SQL with {s} = schema/role name, expected findings)
    type Finding = (&'static str, &'static str, &'static [&'static str]);
    let cases: Vec<(&str, &str, Vec<Finding>)> = vec![
        (
            "chschema",
            "COMMENT ON SCHEMA {s} IS 'edited by hand'",
            vec![("postgres_schema.main", "changed", &["comment"])],
        ),
        (
            "chrole",
            "ALTER ROLE {s} CONNECTION LIMIT 3",
            vec![("postgres_role.app", "changed", &["connection_limit"])],
        ),
        (
            "chsgrant",
            "GRANT CREATE ON SCHEMA {s} TO {s}",
            vec![("postgres_schema_grant.app", "changed", &["privileges"])],
        ),
        (
            "chtable",
            "ALTER TABLE {s}.documents ADD COLUMN extra text",
            vec![("postgres_table.documents", "changed", &["columns"])],
        ),
        (
            "chrls",
            "ALTER TABLE {s}.documents NO FORCE ROW LEVEL SECURITY",
            vec![("postgres_row_security.documents", "changed", &["forced"])],
        ),
        (
            "chtgrant",
            "REVOKE DELETE ON {s}.documents FROM {s}",
            vec![("postgres_table_grant.documents", "changed", &["privileges"])],
        ),
        (
            "chvector",
            "DROP INDEX {s}.embeddings_embedding_hnsw",
            vec![(
                "vector_namespace.embeddings",
                "changed",
                &["distance", "hnsw_m", "hnsw_ef_construction"],
            )],
        ),
        (
            "chsettings",
            "UPDATE tenantform.tenant_settings SET settings = jsonb_set(settings, '{queries_per_minute}', '5') WHERE tenant = '{id}'",
            vec![("tenant_settings.main", "changed", &["queries_per_minute"])],
        ),
        (
            "delsettings",
            "DELETE FROM tenantform.tenant_settings WHERE tenant = '{id}'",
            vec![("tenant_settings.main", "deleted", &[])],
        ),
        (
            "delvector",
            "DROP TABLE {s}.embeddings",
            vec![
                ("postgres_table_grant.embeddings", "deleted", &[]),
                ("vector_namespace.embeddings", "deleted", &[]),
            ],
        ),
        (
            "delrls",
            "DROP POLICY tenant_isolation ON {s}.documents",
            vec![("postgres_row_security.documents", "deleted", &[])],
        ),
        (
            "deltgrant",
            "REVOKE ALL ON {s}.documents FROM {s}",
            vec![("postgres_table_grant.documents", "deleted", &[])],
        ),
        (
            "delsgrant",
            "REVOKE ALL ON SCHEMA {s} FROM {s}",
            vec![("postgres_schema_grant.app", "deleted", &[])],
        ),
        (
            "deltable",
            "DROP TABLE {s}.documents",
            vec![
                ("postgres_row_security.documents", "deleted", &[]),
                ("postgres_table.documents", "deleted", &[]),
                ("postgres_table_grant.documents", "deleted", &[]),
            ],
        ),
        (
            "delschema",
            "DROP SCHEMA {s} CASCADE",
            vec![
                ("postgres_row_security.documents", "deleted", &[]),
                ("postgres_schema.main", "deleted", &[]),
                ("postgres_schema_grant.app", "deleted", &[]),
                ("postgres_table.documents", "deleted", &[]),
                ("postgres_table_grant.documents", "deleted", &[]),
                ("postgres_table_grant.embeddings", "deleted", &[]),
                ("vector_namespace.embeddings", "deleted", &[]),
            ],
        ),
    ];
    let tenants: Vec<TenantDef> = cases
        .iter()
        .map(|(p, _, _)| TenantDef::new(p, "bronze"))
        .collect();
    let ws = Workspace::new(&tenants).await;
    ws.run(&["apply", "--auto-approve"]).ok();

    // No false positives right after an apply, read either way.
    assert_bulk_and_per_resource_agree(&ws);
    let (code, clean) = drift_json(&ws, &[]);
    assert_eq!(code, 0, "{clean:#}");
    assert_eq!(clean["has_drift"], false);
    assert_eq!(
        clean["summary"]["resources_checked"],
        PER_TENANT * tenants.len()
    );
    assert_eq!(clean["summary"]["pending_changes"], 0);

    let admin = ws.admin().await;
    for ((_, sql, _), t) in cases.iter().zip(&tenants) {
        admin
            .batch_execute(&sql.replace("{s}", &t.pg_name()).replace("{id}", &t.id))
            .await
            .unwrap();
    }
    let before = state_bytes(&ws, &tenants);
    // The catalog read of all tenants at once finds what the per-resource reads find.
    assert_bulk_and_per_resource_agree(&ws);
    let (code, report) = drift_json(&ws, &[]);
    assert_eq!(code, 2, "exit 2 on drift");
    assert_eq!(report["has_drift"], true);
    for ((_, sql, expected), t) in cases.iter().zip(&tenants) {
        let expected: Vec<(String, String, Vec<String>)> = expected
            .iter()
            .map(|(local, kind, attrs)| {
                (
                    format!("{}/{local}", t.id),
                    kind.to_string(),
                    attrs.iter().map(|a| a.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(findings(&report, &t.id), expected, "after {sql}");
        assert_eq!(
            tenant_entry(&report, &t.id)["pending"],
            Value::Array(vec![]),
            "not spec changes"
        );
    }
    // Before -> after is given for a changed attribute.
    let role_change = &tenant_entry(&report, &tenants[1].id)["drift"][0]["attributes"][0];
    assert_eq!(
        (
            role_change["recorded"].as_i64(),
            role_change["actual"].as_i64()
        ),
        (Some(10), Some(3))
    );

    // The drift run changed nothing: state files are byte for byte the same, and the
    // out-of-band change is still there.
    assert_eq!(state_bytes(&ws, &tenants), before);
    let limit: i32 = admin
        .query_one(
            "SELECT rolconnlimit FROM pg_roles WHERE rolname = $1",
            &[&tenants[1].pg_name()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(limit, 3);

    // The human and Markdown forms say the same.
    let human = ws.run(&["drift"]).ok();
    assert!(
        human.stdout.contains(&format!(
            "{}/postgres_role.app ({}): changed outside tenantform",
            tenants[1].id,
            tenants[1].pg_name()
        )),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("connection_limit: 10 -> 3"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains(&format!(
            "Drift in {} of {} tenants",
            tenants.len(),
            tenants.len()
        )),
        "{}",
        human.stdout
    );
    let md = ws.run(&["drift", "--markdown"]).ok();
    assert!(
        md.stdout.starts_with("### tenantform drift: drift found"),
        "{}",
        md.stdout
    );
    assert!(
        md.stdout.contains("- `connection_limit`: `10` → `3`"),
        "{}",
        md.stdout
    );

    // apply (which refreshes) repairs every finding, then drift and plan are clean.
    ws.run(&["apply", "--auto-approve"])
        .ok()
        .contains("Apply complete!");
    let (code, after) = drift_json(&ws, &[]);
    assert_eq!(code, 0, "{after:#}");
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
}

/// Spec changes not yet applied are reported apart from drift, and are not drift.
#[tokio::test]
async fn unapplied_spec_changes_are_pending_not_drift() {
    let mut t = TenantDef::new("pending", "bronze");
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    ws.run(&["apply", "--auto-approve"]).ok();
    t.tier = "silver".into();
    ws.write_tenant(&t);
    let (code, report) = drift_json(&ws, &[]);
    assert_eq!(code, 0, "spec changes alone are not drift: {report:#}");
    let entry = tenant_entry(&report, &t.id);
    assert_eq!(entry["status"], "pending");
    assert_eq!(
        entry["pending"][0]["address"],
        format!("{}/postgres_role.app", t.id)
    );
    assert_eq!(
        entry["pending"][0]["actions"],
        serde_json::json!(["update"])
    );
    assert_eq!(
        entry["pending"][0]["changed_attributes"],
        serde_json::json!(["connection_limit"])
    );
    ws.run(&["drift"])
        .ok()
        .contains("spec changes not yet applied (not drift)");
}

/// refresh accepts reality into state: a changed attribute is recorded, a deleted
/// resource leaves state; then drift is clean and plan shows what the spec still wants.
async fn refresh_records_reality_in_state(backend: Backend) {
    let t = TenantDef::new("refresh", "bronze");
    let ws = Workspace::with_backend(std::slice::from_ref(&t), backend).await;
    ws.run(&["apply", "--auto-approve"]).ok();
    let s = t.pg_name();
    ws.admin()
        .await
        .batch_execute(&format!(
            "ALTER ROLE {s} CONNECTION LIMIT 4; REVOKE ALL ON {s}.documents FROM {s}"
        ))
        .await
        .unwrap();

    // Without a terminal and without --auto-approve nothing is written.
    let before = ws.state_bytes(&t.id).unwrap();
    ws.run(&["refresh"]).code(1).contains("pass --auto-approve");
    assert_eq!(ws.state_bytes(&t.id).unwrap(), before);

    let run = ws.run(&["refresh", "--auto-approve"]).ok();
    assert!(
        run.stdout
            .contains("Refresh complete! State of 1 tenant updated"),
        "{}",
        run.all()
    );
    let state = ws.state_json(&t.id).unwrap();
    assert_eq!(
        state["resources"]["postgres_role.app"]["attributes"]["connection_limit"],
        4
    );
    assert!(
        state["resources"]
            .get("postgres_table_grant.documents")
            .is_none(),
        "{state:#}"
    );
    assert!(
        state["resources"]["postgres_role.app"]["attributes"]["password_version"].is_string(),
        "the password's version is kept"
    );

    assert_eq!(drift_json(&ws, &[]).0, 0, "no drift after refresh");
    let plan = ws.run(&["plan", "--detailed-exitcode"]).code(2);
    assert!(
        plan.stdout.contains("connection_limit = 4 -> 10"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("Plan: 1 to add, 1 to change, 0 to destroy."),
        "{}",
        plan.stdout
    );
    ws.run(&["refresh", "--auto-approve"])
        .ok()
        .contains("Nothing to record.");
    ws.run(&["apply", "--auto-approve"]).ok();
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
}

/// A schema made by hand collides with a new tenant's apply; imported, it is managed:
/// plan shows no create for it and apply converges without recreating it.
async fn import_adopts_a_hand_made_schema(backend: Backend) {
    let t = TenantDef::new("import", "bronze");
    let ws = Workspace::with_backend(std::slice::from_ref(&t), backend).await;
    let s = t.pg_name();
    let admin = ws.admin().await;
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA {s}; CREATE TABLE {s}.kept (v int); INSERT INTO {s}.kept VALUES (42)"
        ))
        .await
        .unwrap();
    let oid_sql = "SELECT oid::int8 FROM pg_namespace WHERE nspname = $1";
    let oid_before: i64 = admin.query_one(oid_sql, &[&s]).await.unwrap().get(0);

    let addr = format!("{}/postgres_schema.main", t.id);
    ws.run(&["import", &addr, "wrong_name"])
        .code(1)
        .contains("not \"wrong_name\"");
    ws.run(&["import", &format!("{}/postgres_schema.other", t.id), &s])
        .code(1)
        .contains("import adopts only what the spec declares");
    assert!(
        ws.state_json(&t.id).is_none(),
        "failed imports write nothing"
    );

    ws.run(&["import", &addr, &s]).ok().contains("Imported");
    ws.run(&["import", &addr, &s])
        .code(1)
        .contains("already managed");
    let plan = ws.run(&["plan"]).ok();
    assert!(
        !plan.stdout.contains("postgres_schema.main will be created"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("postgres_schema.main will be updated in place"),
        "the comment: {}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains(&format!(
            "Plan: {} to add, 1 to change, 0 to destroy.",
            PER_TENANT - 1
        )),
        "{}",
        plan.stdout
    );

    ws.run(&["apply", "--auto-approve"]).ok();
    let oid_after: i64 = admin.query_one(oid_sql, &[&s]).await.unwrap().get(0);
    assert_eq!(oid_after, oid_before, "the same schema, not a new one");
    let kept: i32 = admin
        .query_one(&format!("SELECT v FROM {s}.kept"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 42, "its contents are untouched");
    ws.run(&["plan", "--detailed-exitcode"]).code(0);

    // Importing something that does not exist is an error and writes nothing.
    let u = TenantDef::new("ghost", "bronze");
    ws.write_tenant(&u);
    ws.run(&[
        "import",
        &format!("{}/postgres_schema.main", u.id),
        &u.pg_name(),
    ])
    .code(1)
    .contains("does not exist at its endpoint");
    assert!(ws.state_json(&u.id).is_none());
}

/// A drift run over 50 tenants keeps within --parallelism connections, and its report
/// is the same whatever order the reads finish in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_over_fifty_tenants_is_bounded_and_deterministic() {
    let tenants: Vec<TenantDef> = (0..50)
        .map(|i| TenantDef::new(&format!("fleet{i:02}"), "bronze"))
        .collect();
    let ws = Workspace::new(&tenants).await;
    ws.run(&["apply", "--auto-approve", "--parallelism", "16"])
        .ok();
    let admin = ws.admin().await;
    for t in tenants.iter().step_by(7) {
        admin
            .batch_execute(&format!("ALTER ROLE {} CONNECTION LIMIT 2", t.pg_name()))
            .await
            .unwrap();
    }

    // Watch the engine's connections while a drift run with --parallelism 3 goes on.
    let peak = Arc::new(AtomicI64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (peak, done, db) = (peak.clone(), done.clone(), ws.database.clone());
        tokio::spawn(async move {
            let c = admin_client(&db).await;
            while !done.load(Ordering::Relaxed) {
                let n: i64 = c
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tenantform' AND datname = $1",
                        &[&db],
                    )
                    .await
                    .unwrap()
                    .get(0);
                peak.fetch_max(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let (code, narrow) = drift_json(&ws, &["--parallelism", "3"]);
    done.store(true, Ordering::Relaxed);
    watcher.await.unwrap();
    let peak = peak.load(Ordering::Relaxed);
    assert!(
        (1..=3).contains(&peak),
        "at most 3 connections at once, saw {peak}"
    );
    assert_eq!(code, 2);

    let (_, wide) = drift_json(&ws, &["--parallelism", "32"]);
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("created_at");
        v
    };
    assert_eq!(
        strip(narrow.clone()),
        strip(wide),
        "same report whatever the parallelism"
    );
    assert_eq!(narrow["summary"]["resources_checked"], 50 * PER_TENANT);
    assert_eq!(narrow["summary"]["tenants_with_drift"], 8);
    let drifted: Vec<&str> = narrow["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "drifted")
        .map(|t| t["tenant"].as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = tenants.iter().step_by(7).map(|t| t.id.as_str()).collect();
    expected.sort();
    assert_eq!(drifted, expected);
}

async fn admin_client(db: &str) -> tokio_postgres::Client {
    admin(db).await
}

/// The same for the resources outside PostgreSQL: S3, IAM, Redis users and dashboards,
/// each deleted or changed behind the engine's back, reported by `drift` and repaired by
/// `apply`. (ElastiCache is only retagged: moto keeps a deleted cluster's id for ever,
/// so it could not be created again.) Read one resource at a time and in bulk, the
/// report is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_redis_and_dashboard_kinds_changed_or_deleted_are_reported_and_repaired() {
    let names = [
        "delbucket",
        "tagbucket",
        "tagrole",
        "editpolicy",
        "detach",
        "deluser",
        "keysuser",
        "deldash",
        "editdash",
        "descrole",
        "tagpolicy",
        "tagcache",
        "delsecret",
        "tagsecret",
        "polsecret",
    ];
    let tenants: Vec<TenantDef> = names
        .iter()
        .map(|n| {
            if *n == "tagcache" {
                // Gold: the tier with a dedicated cache.
                let mut t = TenantDef::new(n, "gold");
                t.budget_inr = 1_500_000;
                t
            } else {
                TenantDef::new(n, "bronze")
            }
        })
        .collect();
    let ws = Workspace::new(&tenants).await;
    ws.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(drift_json(&ws, &[]).0, 0, "clean right after apply");

    let s3 = s3_client("us-east-1").await;
    let iam = iam_client().await;
    let mut redis = redis_admin().await;
    let account = "123456789012";
    let t = |name: &str| tenants.iter().find(|t| t.id.starts_with(name)).unwrap();
    let bucket = |name: &str| format!("rag-{}-documents", t(name).id);
    let attr = |name: &str, key: &str, field: &str| -> String {
        ws.state_json(&t(name).id).unwrap()["resources"][key]["attributes"][field]
            .as_str()
            .unwrap()
            .to_owned()
    };

    s3.delete_bucket_policy()
        .bucket(bucket("delbucket"))
        .send()
        .await
        .unwrap();
    s3.delete_bucket()
        .bucket(bucket("delbucket"))
        .send()
        .await
        .unwrap();
    s3.put_bucket_tagging()
        .bucket(bucket("tagbucket"))
        .tagging(
            aws_sdk_s3::types::Tagging::builder()
                .tag_set(
                    aws_sdk_s3::types::Tag::builder()
                        .key("TenantID")
                        .value("someone-else")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    iam.tag_role()
        .role_name(format!("rag-{}-app", t("tagrole").id))
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("CostCenter")
                .value("CC-WRONG")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let policy_arn = format!(
        "arn:aws:iam::{account}:policy/rag-{}-documents-access",
        t("editpolicy").id
    );
    iam.create_policy_version()
        .policy_arn(&policy_arn)
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#)
        .set_as_default(true)
        .send()
        .await
        .unwrap();
    iam.detach_role_policy()
        .role_name(format!("rag-{}-app", t("detach").id))
        .policy_arn(format!(
            "arn:aws:iam::{account}:policy/rag-{}-documents-access",
            t("detach").id
        ))
        .send()
        .await
        .unwrap();
    iam.update_role()
        .role_name(format!("rag-{}-app", t("descrole").id))
        .description("edited by hand")
        .send()
        .await
        .unwrap();
    iam.tag_policy()
        .policy_arn(format!(
            "arn:aws:iam::{account}:policy/rag-{}-documents-access",
            t("tagpolicy").id
        ))
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("Tier")
                .value("Platinum")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    elasticache_client("us-east-1")
        .await
        .add_tags_to_resource()
        .resource_name(attr("tagcache", "elasticache_cluster.cache", "arn"))
        .tags(
            aws_sdk_elasticache::types::Tag::builder()
                .key("CostCenter")
                .value("CC-WRONG")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let secrets = secrets_admin("us-east-1").await;
    let secret = |name: &str| credentials_secret_of(t(name));
    secrets
        .delete_secret()
        .secret_id(secret("delsecret"))
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    secrets
        .tag_resource()
        .secret_id(secret("tagsecret"))
        .tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key("CostCenter")
                .value("CC-WRONG")
                .build(),
        )
        .send()
        .await
        .unwrap();
    secrets
        .delete_resource_policy()
        .secret_id(secret("polsecret"))
        .send()
        .await
        .unwrap();
    let user = |name: &str| t(name).pg_name();
    let _: () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(user("deluser"))
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(user("keysuser"))
        .arg("~*")
        .query_async(&mut redis)
        .await
        .unwrap();
    fs::remove_file(attr("deldash", "grafana_dashboard.main", "file")).unwrap();
    let edit = attr("editdash", "grafana_dashboard.main", "file");
    let mut doc: Value = serde_json::from_str(&fs::read_to_string(&edit).unwrap()).unwrap();
    doc["title"] = Value::String("edited by hand".into());
    fs::write(&edit, serde_json::to_string_pretty(&doc).unwrap()).unwrap();

    // IAM from GetAccountAuthorizationDetails, ElastiCache from one listing, Redis
    // from ACL LIST, S3 from a listing and the per-bucket reads, secrets from a listing
    // and each one's policy: the same report.
    assert_bulk_and_per_resource_agree(&ws);
    let (code, report) = drift_json(&ws, &[]);
    assert_eq!(code, 2);
    let expect = |name: &str, expected: &[(&str, &str, &[&str])]| {
        let id = &t(name).id;
        let want: Vec<(String, String, Vec<String>)> = expected
            .iter()
            .map(|(a, k, attrs)| {
                (
                    format!("{id}/{a}"),
                    k.to_string(),
                    attrs.iter().map(|s| s.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(findings(&report, id), want, "{name}");
    };
    expect(
        "delbucket",
        &[
            ("s3_bucket.documents", "deleted", &[]),
            ("s3_bucket_policy.documents", "deleted", &[]),
        ],
    );
    expect(
        "tagbucket",
        &[("s3_bucket.documents", "changed", &["tags"])],
    );
    expect("tagrole", &[("iam_role.app", "changed", &["tags"])]);
    expect(
        "editpolicy",
        &[("iam_policy.documents_access", "changed", &["document"])],
    );
    expect(
        "detach",
        &[(
            "iam_role_policy_attachment.documents_access",
            "deleted",
            &[],
        )],
    );
    expect("deluser", &[("redis_acl_user.app", "deleted", &[])]);
    expect("keysuser", &[("redis_acl_user.app", "changed", &["keys"])]);
    expect("deldash", &[("grafana_dashboard.main", "deleted", &[])]);
    expect(
        "editdash",
        &[("grafana_dashboard.main", "changed", &["title"])],
    );
    expect("descrole", &[("iam_role.app", "changed", &["description"])]);
    expect(
        "tagpolicy",
        &[("iam_policy.documents_access", "changed", &["tags"])],
    );
    expect(
        "tagcache",
        &[("elasticache_cluster.cache", "changed", &["tags"])],
    );
    expect("delsecret", &[("secret.credentials", "deleted", &[])]);
    expect("tagsecret", &[("secret.credentials", "changed", &["tags"])]);
    expect(
        "polsecret",
        &[("secret.credentials", "changed", &["policy"])],
    );

    ws.run(&["apply", "--auto-approve"]).ok();
    // The secret deleted by hand is back, with passwords set anew that work.
    let back = t("delsecret");
    ws.tenant_client(back).await.expect("the role logs in");
    ws.tenant_redis(back).await.expect("the Redis user logs in");
    let (code, after) = drift_json(&ws, &[]);
    assert_eq!(code, 0, "{after:#}");
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
}

on_both_backends!(
    refresh_records_reality_in_state,
    import_adopts_a_hand_made_schema,
);
