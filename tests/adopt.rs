//! `tenantform adopt`: tenants that a real Terraform made (Terraform 1.11 with the AWS
//! provider from the offline mirror, against the stack's moto_server) are taken over
//! without recreating anything, and every refusal writes nothing.
//!
//! The Terraform configuration is the benchmark's (`benches/terraform/`: one instance
//! of `modules/tenant` per tenant, the old setup's shape), given the names and details
//! an older setup had (`rag-docs-<id>` buckets, another policy name, lifecycle rule id
//! and role description, no platform tags). Its PostgreSQL part used the
//! cyrilgdn/postgresql provider, which the offline mirror does not have: the test
//! creates those objects with the SQL that provider runs, and adds them to a copy of the
//! Terraform state as `postgresql_schema`, `postgresql_role`, `postgresql_grant` and
//! `random_password` instances in the shape those providers write. Terraform's own state
//! file is left as Terraform wrote it.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use support::*;

/// The offline provider mirror (as scripts/bench uses it).
fn mirror() -> PathBuf {
    std::env::var_os("TF_PLUGIN_MIRROR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/tf-plugins"))
}

/// Why Terraform cannot run here, if it cannot.
fn terraform_missing() -> Option<String> {
    let version = Command::new("terraform").arg("version").output();
    if !version.is_ok_and(|o| o.status.success()) {
        return Some("terraform is not on PATH".into());
    }
    if !mirror()
        .join("registry.terraform.io/hashicorp/aws")
        .is_dir()
    {
        return Some(format!(
            "the provider mirror {} has no hashicorp/aws",
            mirror().display()
        ));
    }
    None
}

/// A Terraform working directory with the old setup, initialised from the mirror.
struct Terraform {
    dir: tempfile::TempDir,
}

impl Terraform {
    fn init() -> Terraform {
        let dir = tempfile::tempdir().unwrap();
        for file in ["main.tf", "modules/tenant/main.tf"] {
            let to = dir.path().join("old-setup").join(file);
            fs::create_dir_all(to.parent().unwrap()).unwrap();
            fs::copy(repo().join("benches/terraform").join(file), to).unwrap();
        }
        fs::write(
            dir.path().join("terraform.rc"),
            format!(
                "provider_installation {{\n  filesystem_mirror {{\n    path    = \"{}\"\n    include = [\"registry.terraform.io/hashicorp/*\"]\n  }}\n}}\n",
                mirror().display()
            ),
        )
        .unwrap();
        let tf = Terraform { dir };
        tf.run(&["init", "-input=false", "-no-color"]);
        tf
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("old-setup")
    }

    fn state_path(&self) -> PathBuf {
        self.root().join("terraform.tfstate")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("terraform");
        c.arg(format!("-chdir={}", self.root().display()))
            .args(args)
            .envs(stack_env())
            .env("TF_CLI_CONFIG_FILE", self.dir.path().join("terraform.rc"))
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1");
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        let started = std::time::Instant::now();
        let run = Run::from(self.command(args).output().expect("terraform runs"));
        assert_eq!(run.code, 0, "terraform {args:?}:\n{}", run.all());
        eprintln!("terraform {}: {:?}", args[0], started.elapsed());
        run
    }

    /// `terraform apply` of `tenants` (id => tier settings).
    fn apply(&self, tenants: &Value) {
        let vars = self.dir.path().join("tenants.tfvars.json");
        // The old setup tagged with the tenant's tags only.
        fs::write(
            &vars,
            json!({ "tenants": tenants, "platform_tags": {} }).to_string(),
        )
        .unwrap();
        self.run(&[
            "apply",
            "-auto-approve",
            "-input=false",
            "-no-color",
            &format!("-var=endpoint={}", env("AWS_ENDPOINT_URL")),
            &format!("-var-file={}", vars.display()),
        ]);
    }
}

/// What the old module took for tenant `id` of `tier`: the tier's settings from the
/// platform's catalog, and the names and details of the older setup.
fn old_tenant(id: &str, tier: &str) -> Value {
    let (display, glacier_days, dedicated_cache) = match tier {
        "gold" => ("Gold", 90, true),
        "silver" => ("Silver", 60, false),
        other => panic!("no tier {other} here"),
    };
    json!({
        "tier": display, "cost_center": "CC-TEST", "glacier_days": glacier_days,
        "dedicated_cache": dedicated_cache,
        "bucket_name": format!("rag-docs-{id}"),
        "iam_policy_name": format!("rag-{id}-bucket-access"),
        "role_description": format!("App role for tenant {id}"),
        "lifecycle_rule_id": "archive",
        // moto applies a Deny with a condition to every caller, the test's puts included.
        "deny_other_principals": false,
    })
}

/// The PostgreSQL part of the old module for tenant `t`: created with the SQL the
/// cyrilgdn/postgresql provider runs, and returned as the state entries it writes.
async fn old_postgres_part(ws: &Workspace, t: &TenantDef, password: &str) -> Vec<Value> {
    let name = t.pg_name();
    let admin = ws.admin().await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE \"{name}\" WITH LOGIN CONNECTION LIMIT 5 PASSWORD '{password}';
             CREATE SCHEMA IF NOT EXISTS \"{name}\" AUTHORIZATION CURRENT_USER;
             GRANT USAGE ON SCHEMA \"{name}\" TO \"{name}\";"
        ))
        .await
        .unwrap();
    let module = format!("module.tenant[\"{}\"]", t.id);
    let db = &ws.database;
    let pg = "provider[\"registry.terraform.io/cyrilgdn/postgresql\"]";
    let entry =
        |tf_type: &str, tf_name: &str, provider: &str, attributes: Value, sensitive: Value| {
            json!({
                "module": module, "mode": "managed", "type": tf_type, "name": tf_name,
                "provider": provider,
                "instances": [{"schema_version": 0, "attributes": attributes,
                               "sensitive_attributes": sensitive, "private": "bnVsbA=="}]
            })
        };
    vec![
        entry(
            "random_password",
            "db",
            "provider[\"registry.terraform.io/hashicorp/random\"]",
            json!({"id": "none", "length": 32, "lower": true, "min_lower": 0, "min_numeric": 0,
                   "min_special": 0, "min_upper": 0, "number": true, "numeric": true,
                   "override_special": null, "result": password, "special": false, "upper": true,
                   "keepers": null}),
            json!([[{"type": "get_attr", "value": "result"}]]),
        ),
        entry(
            "postgresql_role",
            "app",
            pg,
            json!({"id": name, "name": name, "login": true, "password": password,
                   "connection_limit": 5, "superuser": false, "create_database": false,
                   "create_role": false, "inherit": true, "replication": false,
                   "bypass_row_level_security": false, "encrypted_password": true,
                   "valid_until": "infinity", "roles": [], "search_path": [],
                   "statement_timeout": 0, "idle_in_transaction_session_timeout": 0,
                   "assume_role": "", "skip_drop_role": false, "skip_reassign_owned": false}),
            json!([[{"type": "get_attr", "value": "password"}]]),
        ),
        entry(
            "postgresql_schema",
            "main",
            pg,
            json!({"id": format!("{db}.{name}"), "name": name, "database": db,
                   "owner": env("PGUSER"), "if_not_exists": true, "drop_cascade": false,
                   "policy": []}),
            json!([]),
        ),
        entry(
            "postgresql_grant",
            "schema_usage",
            pg,
            json!({"id": format!("{name}_{db}_{name}_schema"), "database": db, "role": name,
                   "schema": name, "object_type": "schema", "objects": null, "columns": null,
                   "privileges": ["USAGE"], "with_grant_option": false}),
            json!([]),
        ),
    ]
}

/// Every version of every object in `bucket`: (key, version id).
async fn versions(bucket: &str) -> BTreeSet<(String, String)> {
    let s3 = s3_client("us-east-1").await;
    let out = s3
        .list_object_versions()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    out.versions()
        .iter()
        .map(|v| {
            (
                v.key().unwrap().to_owned(),
                v.version_id().unwrap().to_owned(),
            )
        })
        .collect()
}

fn write_json(path: &Path, v: &Value) {
    fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

/// The resource of `tf_type` in tenant `id`'s module instance of a Terraform state.
fn tf_resource<'a>(state: &'a mut Value, id: &str, tf_type: &str) -> &'a mut Value {
    let module = format!("module.tenant[\"{id}\"]");
    state["resources"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["module"] == module.as_str() && r["type"] == tf_type)
        .unwrap_or_else(|| panic!("{tf_type} of {id}"))
}

/// A tenantform state of `tenant` (serial 1 of `lineage`) that holds `bucket`.
fn state_holding_bucket(tenant: &str, lineage: &str, bucket: &str) -> Value {
    json!({
        "format_version": 1, "tenant": tenant, "serial": 1,
        "lineage": lineage, "protected": false,
        "updated_at": "2026-01-01T00:00:00Z",
        "resources": {"s3_bucket.documents": {
            "type": "s3_bucket", "name": "documents", "status": "created",
            "attributes": {"bucket": bucket, "region": "us-east-1"}, "depends_on": []}}
    })
}

/// Another tenant's state written as the adopted tenant's lock is taken (a trigger on
/// the lock table writes it in the statement that takes the lock) is seen: who holds
/// what is read under the locks, so the adoption is refused and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_written_while_the_locks_are_taken_is_seen() {
    let gold = TenantDef::new("tfrace", "gold");
    let other = TenantDef::new("tfother", "silver");
    let ws = Workspace::with_backend(&[gold.clone(), other.clone()], Backend::Postgres).await;
    let bucket = format!("rag-{}-documents", gold.id);
    let from = ws.dir.path().join("race.tfstate");
    write_json(
        &from,
        &json!({
            "version": 4, "terraform_version": "1.11.0", "serial": 3,
            "lineage": "5f0e8d1c-0000-4000-8000-000000000003",
            "resources": [{
                "module": format!("module.tenant[\"{}\"]", gold.id),
                "mode": "managed", "type": "aws_s3_bucket", "name": "documents",
                "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
                "instances": [{"schema_version": 0, "attributes": {"bucket": bucket, "id": bucket}}]
            }]
        }),
    );
    let planted = state_holding_bucket(&other.id, "0193a5b0-0000-7000-8000-000000000002", &bucket);
    ws.admin()
        .await
        .batch_execute(&format!(
            "CREATE FUNCTION plant_state() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               INSERT INTO tenantform_state.states \
                 (tenant, format_version, serial, lineage, document, written_at, written_by) \
               VALUES ('{other}', 1, 1, '0193a5b0-0000-7000-8000-000000000002', \
                 '{planted}'::jsonb, now(), '{{}}'::jsonb) ON CONFLICT DO NOTHING; \
               RETURN NULL; END $$; \
             CREATE TRIGGER plant_state AFTER INSERT OR UPDATE ON tenantform_state.locks \
               FOR EACH ROW WHEN (NEW.tenant = '{gold}') EXECUTE FUNCTION plant_state();",
            other = other.id,
            gold = gold.id,
        ))
        .await
        .unwrap();
    assert!(
        ws.state_json(&other.id).is_none(),
        "planted only by the lock"
    );

    let run = ws
        .run(&["adopt", "--from-tfstate", from.to_str().unwrap()])
        .code(1);
    assert!(
        run.stdout
            .contains(&format!("{bucket} already belongs to tenant {}", other.id)),
        "{}",
        run.all()
    );
    assert!(ws.state_json(&gold.id).is_none(), "nothing written");
    assert_eq!(
        ws.state_json(&other.id).unwrap()["resources"],
        planted["resources"],
        "the other state is left as it was"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_terraform_made_are_adopted_without_recreating_anything() {
    if let Some(why) = terraform_missing() {
        eprintln!("SKIPPED: {why}; this test needs Terraform and its AWS provider mirror");
        return;
    }
    let started = std::time::Instant::now();
    // Fresh ids every run: moto keeps an ElastiCache cluster id for ever.
    let gold = TenantDef::new("tfgold", "gold");
    let silver = TenantDef::new("tfsilver", "silver");
    let ws = Workspace::new(&[gold.clone(), silver.clone()]).await;

    let tf = Terraform::init();
    tf.apply(
        &json!({ gold.id.clone(): old_tenant(&gold.id, "gold"), silver.id.clone(): old_tenant(&silver.id, "silver") }),
    );

    // The Terraform state to adopt from: Terraform's own, plus the PostgreSQL part.
    let mut tfstate: Value = serde_json::from_slice(&fs::read(tf.state_path()).unwrap()).unwrap();
    let terraform_bytes = fs::read(tf.state_path()).unwrap();
    for t in [&gold, &silver] {
        let entries = old_postgres_part(&ws, t, &format!("old-pw-{}", suffix())).await;
        tfstate["resources"].as_array_mut().unwrap().extend(entries);
    }
    let from = ws.dir.path().join("adopt.tfstate");
    write_json(&from, &tfstate);
    let from_arg = from.to_str().unwrap();

    // Objects in the gold tenant's bucket, one of them in two versions.
    let bucket = format!("rag-docs-{}", gold.id);
    let s3 = s3_client("us-east-1").await;
    for (key, body) in [("a.txt", "one"), ("b.txt", "two"), ("a.txt", "three")] {
        s3.put_object()
            .bucket(&bucket)
            .key(key)
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }
    let before = versions(&bucket).await;
    assert_eq!(before.len(), 3);

    let nothing_written = |what: &str| {
        for t in [&gold, &silver] {
            assert!(
                ws.state_json(&t.id).is_none(),
                "{what}: no state for {}",
                t.id
            );
        }
    };

    // Refused: the names are the old module's, not the default [naming].
    let run = ws.run(&["adopt", "--from-tfstate", from_arg]).code(1);
    assert!(
        run.stdout
            .contains("set [naming] s3_bucket = \"rag-docs-{id}\" in platform.toml")
            && run
                .stdout
                .contains("set [naming] iam_policy = \"rag-{id}-bucket-access\" in platform.toml"),
        "{}",
        run.all()
    );
    nothing_written("identity mismatch");
    ws.edit_platform(|p| {
        p.replace(
            "s3_bucket = \"rag-{id}-documents\"",
            "s3_bucket = \"rag-docs-{id}\"",
        )
        .replace(
            "iam_policy = \"rag-{id}-documents-access\"",
            "iam_policy = \"rag-{id}-bucket-access\"",
        )
    });

    // Refused: a tainted instance; a type with no mapping; a state of version 3.
    let variant = |name: &str, edit: &dyn Fn(&mut Value)| {
        let mut v = tfstate.clone();
        edit(&mut v);
        let path = ws.dir.path().join(name);
        write_json(&path, &v);
        path
    };
    let tainted = variant("tainted.tfstate", &|v| {
        tf_resource(v, &gold.id, "aws_iam_role")["instances"][0]["status"] = json!("tainted");
    });
    let run = ws
        .run(&["adopt", "--from-tfstate", tainted.to_str().unwrap()])
        .code(1);
    assert!(
        run.stdout.contains("aws_iam_role.app: tainted"),
        "{}",
        run.all()
    );
    let unknown = variant("unknown.tfstate", &|v| {
        let mut queue = tf_resource(v, &silver.id, "aws_iam_role").clone();
        queue["type"] = json!("aws_sqs_queue");
        v["resources"].as_array_mut().unwrap().push(queue);
    });
    let run = ws
        .run(&["adopt", "--from-tfstate", unknown.to_str().unwrap()])
        .code(1);
    assert!(
        run.stdout
            .contains("resource type aws_sqs_queue has no mapping"),
        "{}",
        run.all()
    );
    let v3 = variant("v3.tfstate", &|v| v["version"] = json!(3));
    let run = ws
        .run(&["adopt", "--from-tfstate", v3.to_str().unwrap()])
        .code(1);
    assert!(
        run.stderr.contains("format version 3") && run.stderr.contains("version 4 only"),
        "{}",
        run.all()
    );
    nothing_written("tainted, unknown type, version 3");

    // Refused: the gold tenant's bucket is already in the silver tenant's state.
    let silver_state = ws.state_file(&silver.id);
    fs::create_dir_all(silver_state.parent().unwrap()).unwrap();
    write_json(
        &silver_state,
        &state_holding_bucket(&silver.id, "0193a5b0-0000-7000-8000-000000000001", &bucket),
    );
    let planted = fs::read(&silver_state).unwrap();
    let run = ws
        .run(&["adopt", "--from-tfstate", from_arg, "--tenant", &gold.id])
        .code(1);
    assert!(
        run.stdout
            .contains(&format!("{bucket} already belongs to tenant {}", silver.id)),
        "{}",
        run.all()
    );
    assert!(ws.state_json(&gold.id).is_none());
    assert_eq!(fs::read(&silver_state).unwrap(), planted, "unchanged");
    fs::remove_file(&silver_state).unwrap();

    // A dry run plans and writes nothing.
    let run = ws
        .run(&["adopt", "--from-tfstate", from_arg, "--dry-run"])
        .ok();
    assert!(
        run.stdout.contains("Dry run: nothing was written"),
        "{}",
        run.all()
    );
    assert!(
        run.stdout
            .contains("postgres_role.app will be updated in place")
            && run
                .stdout
                .contains("password         = (not in state) -> (known after apply)")
            && run.stdout.contains(", 0 to destroy."),
        "the role's password is rotated: {}",
        run.stdout
    );
    // What Terraform left differs from the spec for that reason, not a spec change.
    assert!(
        run.stdout.contains(&format!(
            "{}/iam_role.app will be updated in place (adopted from Terraform; differs from the spec in ",
            gold.id
        )),
        "{}",
        run.stdout
    );
    // The attachment's policy ARN in the mapping is in the account the plan read.
    let attachment = run
        .stdout
        .lines()
        .find(|l| l.contains("iam_role_policy_attachment.documents_access ("))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    let account = attachment
        .split("arn:aws:iam::")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_default();
    assert!(
        account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()),
        "{attachment}"
    );
    assert!(!run.stdout.contains("{aws_account_id}"), "{}", run.stdout);
    nothing_written("dry run");

    // Adopted, from where the old setup kept its state: a bucket, through the S3 API.
    let state_bucket = format!("tf-state-{}", suffix());
    s3.create_bucket()
        .bucket(&state_bucket)
        .send()
        .await
        .unwrap();
    s3.put_object()
        .bucket(&state_bucket)
        .key("tenants/terraform.tfstate")
        .body(fs::read(&from).unwrap().into())
        .send()
        .await
        .unwrap();
    let s3_source = format!("s3://{state_bucket}/tenants/terraform.tfstate");
    let mut scan = OutputScan::new();
    let run = scan.run(&ws, &["adopt", "--from-tfstate", &s3_source]).ok();
    assert!(
        !run.stdout.contains("old-pw-"),
        "Terraform's secrets are not shown"
    );
    let handover: Vec<&str> = run
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("terraform state rm "))
        .collect();
    assert_eq!(handover.len(), 2, "{}", run.stdout);
    let lineage = tfstate["lineage"].as_str().unwrap();
    for t in [&gold, &silver] {
        let state = ws.state_json(&t.id).expect("adopted");
        assert_eq!(state["adopted_from"]["lineage"], lineage);
        assert_eq!(state["adopted_from"]["source"], s3_source.as_str());
        assert_eq!(state["adopted_from"]["serial"], tfstate["serial"]);
        assert!(
            state["resources"]["postgres_role.app"]["attributes"]
                .get("password")
                .is_none()
        );
    }
    assert_eq!(
        ws.state_json(&gold.id).unwrap()["resources"]["s3_bucket.documents"]["attributes"]["bucket"],
        bucket.as_str()
    );
    assert_eq!(
        fs::read(tf.state_path()).unwrap(),
        terraform_bytes,
        "Terraform's state is only read"
    );
    // Adopting again is refused: the objects are managed now.
    ws.run(&["adopt", "--from-tfstate", from_arg])
        .code(1)
        .contains("already managed by tenantform");

    // The plan deletes and replaces nothing; apply converges; the next plan is clean.
    let plan = ws.run(&["plan", "--json"]).ok();
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    for c in plan["resource_changes"].as_array().unwrap() {
        let actions = &c["change"]["actions"];
        assert!(
            !actions.as_array().unwrap().contains(&json!("delete")),
            "{}: {actions}",
            c["address"]
        );
    }
    scan.run(&ws, &["apply", "--auto-approve"]).ok();
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
    assert_eq!(
        versions(&bucket).await,
        before,
        "every object version is kept"
    );
    // The role's new password is tenantform's, delivered to the tenant's secret
    // (state keeps its version), and it works.
    assert!(
        ws.state_attr(&gold.id, "postgres_role.app", "password_version")
            .is_string()
    );
    ws.tenant_client(&gold)
        .await
        .expect("the rotated password logs in");
    scan.learn_tenant_secrets(&ws).await;
    scan.assert_clean();

    // The hand-over: Terraform forgets the AWS objects (the PostgreSQL ones were never
    // in its own state here), so that no Terraform run can destroy them; only its data
    // sources are left.
    let tf_addresses: BTreeSet<String> = tf
        .run(&["state", "list"])
        .stdout
        .lines()
        .filter(|l| !l.contains(".data."))
        .map(str::to_owned)
        .collect();
    let mut rm = vec!["state".to_owned(), "rm".to_owned()];
    for line in &handover {
        for quoted in line["terraform state rm ".len()..].split("' '") {
            let address = quoted.trim_matches('\'').to_owned();
            if tf_addresses.contains(&address) {
                rm.push(address);
            } else {
                assert!(
                    address.contains(".postgresql_"),
                    "only the added PostgreSQL part is not in Terraform's state: {address}"
                );
            }
        }
    }
    assert_eq!(
        rm.len() - 2,
        tf_addresses.len(),
        "every AWS object is handed over"
    );
    tf.run(&rm.iter().map(String::as_str).collect::<Vec<_>>());
    let left = tf.run(&["state", "list"]).stdout;
    assert!(
        left.lines().all(|l| l.contains(".data.")),
        "Terraform manages nothing of theirs any more: {left}"
    );
    eprintln!("whole test: {:?}", started.elapsed());
}
