//! Security properties against the real stack: with tenant A's own credentials (its
//! PostgreSQL role and Redis user from its state, its IAM role through STS), every read
//! or write of tenant B's data and every escalation is refused, each with the service's
//! own refusal code; files that hold secrets are private; and no command prints a
//! secret.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use support::{OutputScan, TenantDef, Workspace, aws_config, redis_admin, redis_cmd, s3_client};

const ACCOUNT: &str = "123456789012";

/// Attempts and refusals per service, printed at the end.
#[derive(Default)]
struct Tally(BTreeMap<&'static str, (usize, usize)>);

impl Tally {
    #[track_caller]
    fn refused(&mut self, service: &'static str, what: &str, code: Option<String>, want: &str) {
        let entry = self.0.entry(service).or_default();
        entry.0 += 1;
        assert_eq!(
            code.as_deref(),
            Some(want),
            "{service}: {what} was not refused with {want}"
        );
        entry.1 += 1;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_own_credentials_reach_nothing_of_another_tenant() {
    let a = TenantDef::new("sec-a", "bronze");
    let b = TenantDef::new("sec-b", "bronze");
    let ws = Workspace::new(&[a.clone(), b.clone()]).await;
    let mut out = OutputScan::new();
    out.run(&ws, &["apply", "--auto-approve"]).ok();
    out.learn_tenant_secrets(&ws).await;
    assert!(
        out.secrets() >= 4 + 3,
        "two tenants' passwords and the stack's"
    );

    let (a_name, b_name) = (a.pg_name(), b.pg_name());
    let admin_role = support::env("PGUSER");
    // B's data, written by the platform's admin.
    ws.admin()
        .await
        .batch_execute(&format!(
            "INSERT INTO {b_name}.documents (content) VALUES ('b only'); \
             INSERT INTO {a_name}.documents (content) VALUES ('a own')"
        ))
        .await
        .unwrap();
    let mut redis = redis_admin().await;
    let b_key = format!("tenant:{}:secret", b.id);
    redis_cmd(&mut redis, &["SET", &b_key, "b only"])
        .await
        .unwrap();
    let bucket_b = format!("rag-{}-documents", b.id);
    s3_client("us-east-1")
        .await
        .put_object()
        .bucket(&bucket_b)
        .key("b-only.txt")
        .body(b"b only".to_vec().into())
        .send()
        .await
        .unwrap();

    let mut tally = Tally::default();

    // PostgreSQL, as A's login role: SQLSTATE 42501 (insufficient_privilege) for all.
    let pg = ws.tenant_client(&a).await.expect("A's role logs in");
    let own: i64 = pg
        .query_one(&format!("SELECT count(*) FROM {a_name}.documents"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(own, 1, "A reads its own rows");
    for (what, sql) in [
        (
            "read B's documents",
            format!("SELECT * FROM {b_name}.documents"),
        ),
        (
            "write B's documents",
            format!("INSERT INTO {b_name}.documents (content) VALUES ('x')"),
        ),
        (
            "delete B's documents",
            format!("DELETE FROM {b_name}.documents"),
        ),
        (
            "read B's embeddings",
            format!("SELECT * FROM {b_name}.embeddings"),
        ),
        (
            "grant itself B's table",
            format!("GRANT SELECT ON {b_name}.documents TO {a_name}"),
        ),
        (
            "write a row for B in its own table",
            format!(
                "INSERT INTO {a_name}.documents (tenant_id, content) VALUES ('{}', 'x')",
                b.id
            ),
        ),
        ("create a role", "CREATE ROLE sneaky LOGIN".into()),
        ("become B", format!("SET ROLE {b_name}")),
        ("become the admin", format!("SET ROLE \"{admin_role}\"")),
        (
            "disable RLS on its own table",
            format!("ALTER TABLE {a_name}.documents DISABLE ROW LEVEL SECURITY"),
        ),
        (
            "stop forcing RLS on its own table",
            format!("ALTER TABLE {a_name}.documents NO FORCE ROW LEVEL SECURITY"),
        ),
        (
            "drop its own RLS policy",
            format!("DROP POLICY tenant_isolation ON {a_name}.documents"),
        ),
        (
            "disable RLS on B's table",
            format!("ALTER TABLE {b_name}.documents DISABLE ROW LEVEL SECURITY"),
        ),
        (
            "make itself superuser",
            format!("ALTER ROLE {a_name} SUPERUSER"),
        ),
        (
            "give itself BYPASSRLS",
            format!("ALTER ROLE {a_name} BYPASSRLS"),
        ),
        (
            "change B's password",
            format!("ALTER ROLE {b_name} PASSWORD 'taken-over'"),
        ),
        ("create a schema", "CREATE SCHEMA sneaky".into()),
        (
            "create a table in public",
            "CREATE TABLE public.sneaky (x int)".into(),
        ),
        (
            "read a server file",
            "SELECT pg_read_file('/etc/hostname')".into(),
        ),
        ("run a program", "COPY (SELECT 1) TO PROGRAM 'true'".into()),
    ] {
        let code = pg
            .batch_execute(&sql)
            .await
            .err()
            .and_then(|e| e.code().map(|c| c.code().to_owned()));
        tally.refused("PostgreSQL", what, code, "42501");
    }

    // Redis, as A's ACL user: NOPERM for all.
    let mut r = ws.tenant_redis(&a).await.expect("A's Redis user logs in");
    let own_key = format!("tenant:{}:k", a.id);
    redis_cmd(&mut r, &["SET", &own_key, "v"])
        .await
        .expect("A writes its own keys");
    for (what, words) in [
        ("read B's key", vec!["GET", b_key.as_str()]),
        ("write B's key", vec!["SET", b_key.as_str(), "x"]),
        ("delete B's key", vec!["DEL", b_key.as_str()]),
        ("list every key", vec!["KEYS", "*"]),
        ("scan the keyspace", vec!["SCAN", "0"]),
        ("read the configuration", vec!["CONFIG", "GET", "*"]),
        (
            "widen its own rights",
            vec!["ACL", "SETUSER", &b.pg_name(), "on", "+@all", "~*"],
        ),
        ("list the users", vec!["ACL", "LIST"]),
        ("flush everything", vec!["FLUSHALL"]),
        (
            "read B's key from a script",
            vec![
                "EVAL",
                "return redis.call('GET', KEYS[1])",
                "1",
                b_key.as_str(),
            ],
        ),
        ("listen to every channel", vec!["PSUBSCRIBE", "*"]),
    ] {
        let code = redis_cmd(&mut r, &words)
            .await
            .err()
            .and_then(|e| e.code().map(str::to_owned));
        tally.refused("Redis", what, code, "NOPERM");
    }

    // S3, with A's IAM role taken on through STS as the validation checks do.
    let aws = tenantform::connect::aws::AwsClients::new(aws_config().await);
    let role_a = aws
        .assume_tenant_role(
            &format!("arn:aws:iam::{ACCOUNT}:role/rag-{}-app", a.id),
            "security-test",
        )
        .await
        .expect("the engine may assume A's role");
    let s3 = role_a.s3("us-east-1");
    fn code<O, E: aws_sdk_s3::error::ProvideErrorMetadata>(
        r: Result<O, aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
    ) -> Option<String> {
        use aws_sdk_s3::error::ProvideErrorMetadata;
        r.err().and_then(|e| e.code().map(str::to_owned))
    }
    let attempts = [
        (
            "list B's objects",
            code(s3.list_objects_v2().bucket(&bucket_b).send().await),
        ),
        (
            "get B's object",
            code(
                s3.get_object()
                    .bucket(&bucket_b)
                    .key("b-only.txt")
                    .send()
                    .await,
            ),
        ),
        (
            "put into B's bucket",
            code(
                s3.put_object()
                    .bucket(&bucket_b)
                    .key("a.txt")
                    .body(b"x".to_vec().into())
                    .send()
                    .await,
            ),
        ),
        (
            "delete B's object",
            code(
                s3.delete_object()
                    .bucket(&bucket_b)
                    .key("b-only.txt")
                    .send()
                    .await,
            ),
        ),
        (
            "read B's bucket policy",
            code(s3.get_bucket_policy().bucket(&bucket_b).send().await),
        ),
        (
            "replace B's bucket policy",
            code(
                s3.put_bucket_policy()
                    .bucket(&bucket_b)
                    .policy("{}")
                    .send()
                    .await,
            ),
        ),
        (
            "delete B's bucket",
            code(s3.delete_bucket().bucket(&bucket_b).send().await),
        ),
    ];
    for (what, code) in attempts {
        tally.refused("S3", what, code, "AccessDenied");
    }
    // B's data is all there.
    let b_rows: i64 = ws
        .admin()
        .await
        .query_one(&format!("SELECT count(*) FROM {b_name}.documents"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(b_rows, 1);
    let b_value: String = redis::cmd("GET")
        .arg(&b_key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(b_value, "b only");

    let mut line = String::from("security:");
    for (service, (attempts, refused)) in &tally.0 {
        line.push_str(&format!(" {service} {refused}/{attempts} refused;"));
    }
    println!("{line}");

    // Files that hold secrets or name resources are private.
    let plan_file = ws.dir.path().join("tenants.plan");
    out.run(&ws, &["plan", "--out", plan_file.to_str().unwrap()])
        .ok();
    out.run(&ws, &["apply", "--auto-approve", "--tenant", &a.id])
        .ok();
    let store = tenantform::state::StateStore::local(ws.state());
    let lock = store
        .lock(
            &a.id.parse().unwrap(),
            &tenantform::state::LockRequest::new("security-test", std::time::Duration::ZERO),
        )
        .await
        .unwrap();
    let mut private = vec![
        plan_file.clone(),
        ws.state().join(format!("tenants/{}.lock", a.id)),
    ];
    for t in [&a, &b] {
        private.push(ws.state_file(&t.id));
        private.push(ws.state().join(format!("tenants/{}.json.backup", t.id)));
    }
    for path in &private {
        let mode = fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    drop(lock);

    // No command prints a secret: plan, show, drift, state show, JSON forms, destroy.
    out.run(&ws, &["plan", "--json"]).ok();
    out.run(&ws, &["show"]).ok();
    out.run(&ws, &["show", "--json"]).ok();
    out.run(&ws, &["show", plan_file.to_str().unwrap()]).ok();
    out.run(
        &ws,
        &["state", "show", &format!("{}/postgres_role.app", a.id)],
    )
    .ok();
    out.run(
        &ws,
        &["state", "show", &format!("{}/redis_acl_user.app", b.id)],
    )
    .ok();
    out.run(&ws, &["drift"]).ok();
    out.run(&ws, &["destroy", "--auto-approve"]).ok();
    let scanned = out.assert_clean();
    println!(
        "secrets: {} outputs of the CLI scanned for {} secrets, none found",
        scanned,
        out.secrets()
    );
}
