//! Encryption of state and saved plans (`[encryption]`), through the real binary, on
//! both state backends: records round-trip and hold no secret in clear; a flipped
//! byte, another tenant's record and an older record put in place are refused and
//! nothing is overwritten; a key rotation with the fallback, then `enforced`; a plain
//! state of an earlier release is encrypted on its next write; the `aws_kms` key
//! provider against moto, with rotations between it and a passphrase.

mod support;

use serde_json::Value;
use support::*;

const PASSPHRASE: &str = "a passphrase long enough for PBKDF2";
const NEXT_PASSPHRASE: &str = "the next passphrase, after rotation";

/// `[encryption]` with the passphrase provider, the minimum iterations (fast tests),
/// and these extra lines.
fn encrypt(ws: &mut Workspace, extra: &str) {
    ws.set_env("TENANTFORM_STATE_PASSPHRASE", PASSPHRASE);
    set_encryption(ws, &format!("key_provider = \"passphrase\"\n{extra}"));
}

/// Replaces (or adds) the `[encryption]` section with `body`.
fn set_encryption(ws: &Workspace, body: &str) {
    ws.edit_platform(|s| {
        // The section is always the last one: it is appended here.
        let kept = match s.find("\n[encryption]\n") {
            Some(start) => s[..start].to_owned(),
            None => s,
        };
        format!("{kept}\n[encryption]\niterations = 200000\n{body}\n")
    });
}

fn is_envelope(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Value>(bytes)
        .map(|v| v["kind"] == "tenantform-encrypted")
        .unwrap_or(false)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The tenant's state, decrypted by `state pull --show-secrets`.
fn pulled(ws: &Workspace, id: &str) -> Value {
    let run = ws.run(&["state", "pull", id, "--show-secrets"]).ok();
    serde_json::from_str(&run.stdout).expect("state pull prints JSON")
}

/// A value only the tenant's state holds (the version of its role's password, random):
/// found in a stored state, it was stored in clear.
fn password_of(state: &Value) -> String {
    state["resources"]["postgres_role.app"]["attributes"]["password_version"]
        .as_str()
        .expect("a password version in state")
        .to_owned()
}

async fn state_round_trips_and_holds_no_secret_in_clear(backend: Backend) {
    let t = TenantDef::new("enc", "bronze");
    let mut ws = Workspace::with_backend(std::slice::from_ref(&t), backend).await;
    encrypt(&mut ws, "enforced = true");
    let planfile = ws.dir.path().join("tenant.plan");
    let planfile = planfile.to_str().unwrap();
    ws.run(&["plan", "--out", planfile]).ok();
    let plan_bytes = std::fs::read(planfile).unwrap();
    assert!(is_envelope(&plan_bytes), "the saved plan is encrypted");
    ws.run(&["show", planfile]).ok().contains(&t.id);
    ws.run(&["apply", planfile])
        .ok()
        .contains("Apply complete!");

    let stored = ws.state_bytes(&t.id).expect("a state");
    assert!(is_envelope(&stored), "the state is encrypted");
    assert!(
        !contains(&stored, &t.id.replace('-', "_")),
        "no name in clear"
    );
    let state = pulled(&ws, &t.id);
    assert_eq!(state["tenant"], t.id.as_str());
    let version = password_of(&state);
    // The state decrypted leads to the credentials that work.
    let aws = tenantform::connect::aws::AwsClients::new(aws_config().await);
    let credentials = tenantform::workflow::checks::tenant_credentials(
        &aws,
        &serde_json::from_value(state.clone()).unwrap(),
    )
    .await
    .expect("the tenant's role reads its credentials");
    let password = credentials.postgres.password;
    let role = t.pg_name();
    let _logged_in = tokio_postgres::connect(
        &format!(
            "host={} port={} user={role} password={password} dbname={}",
            env("PGHOST"),
            env("PGPORT"),
            ws.database
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("the password from the secret logs in");
    ws.run(&[
        "state",
        "show",
        &format!("{}/postgres_role.app", t.id),
        "--show-secrets",
    ])
    .ok()
    .contains(&version);
    ws.run(&["plan", "--detailed-exitcode"])
        .code(0)
        .contains("No changes.");

    // Nowhere in clear: not in the state files, the plan file, or any row; the
    // password not even encrypted (state holds only its version).
    for entry in walk_files(&ws.state()) {
        let bytes = std::fs::read(&entry).unwrap();
        for s in [&password, &version] {
            assert!(
                !contains(&bytes, s),
                "{} holds the password or its version",
                entry.display()
            );
        }
    }
    assert!(!contains(&plan_bytes, &password));
    ws.run(&["plan", "--out", planfile]).ok();
    assert!(!contains(&std::fs::read(planfile).unwrap(), &password));
    let rows = database_text(&ws).await;
    assert!(
        !rows.contains(&password) && !rows.contains(&version),
        "a row of the database holds the password or its version"
    );
    let pull = ws
        .run(&["state", "pull", &t.id, "--show-secrets"])
        .ok()
        .stdout;
    assert!(!pull.contains(&password));
}

/// Runs `args`, which must fail naming `want`, and checks the tenant's stored state is
/// byte for byte what it was.
fn refused(ws: &Workspace, id: &str, args: &[&str], want: &str) -> String {
    let before = ws.state_bytes(id);
    let run = ws.run(args).code(1).contains(want);
    assert_eq!(
        ws.state_bytes(id),
        before,
        "{id}'s state was not overwritten"
    );
    assert!(!run.all().contains("panicked"), "{}", run.all());
    run.all()
}

async fn altered_swapped_and_older_records_are_refused(backend: Backend) {
    let a = TenantDef::new("enca", "bronze");
    let b = TenantDef::new("encb", "bronze");
    let mut ws = Workspace::with_backend(&[a.clone(), b.clone()], backend).await;
    encrypt(&mut ws, "");
    ws.run(&["apply", "--auto-approve"]).ok();
    let apply_b = ["apply", "--auto-approve", "--tenant", b.id.as_str()];

    // A byte flipped in the ciphertext.
    let original = ws.state_bytes(&b.id).unwrap();
    let mut envelope: Value = serde_json::from_slice(&original).unwrap();
    let ct = envelope["ciphertext"].as_str().unwrap().to_owned();
    let flipped = format!(
        "{}{}",
        if ct.starts_with('A') { "B" } else { "A" },
        &ct[1..]
    );
    envelope["ciphertext"] = Value::String(flipped);
    put_state(&ws, &b.id, &serde_json::to_vec_pretty(&envelope).unwrap()).await;
    let err = refused(
        &ws,
        &b.id,
        &apply_b,
        "cannot be decrypted with key provider passphrase",
    );
    assert!(err.contains(&b.id), "{err}");
    assert!(err.contains("TENANTFORM_STATE_PASSPHRASE"), "{err}");
    put_state(&ws, &b.id, &original).await;
    ws.run(&["plan", "--detailed-exitcode"]).code(0);

    // Another tenant's record in its place.
    let of_a = ws.state_bytes(&a.id).unwrap();
    put_state(&ws, &b.id, &of_a).await;
    refused(
        &ws,
        &b.id,
        &apply_b,
        &format!("holds an encrypted state of tenant {}", a.id),
    );
    put_state(&ws, &b.id, &original).await;

    // An older record of the same tenant over the newer one.
    ws.run(&[
        "apply",
        "--auto-approve",
        "--replace",
        &format!("{}/postgres_role.app", b.id),
    ])
    .ok();
    let newer = ws.state_bytes(&b.id).unwrap();
    put_state(&ws, &b.id, &original).await;
    refused(&ws, &b.id, &apply_b, "older state");
    if backend == Backend::Postgres {
        // The whole row put back, serial column included.
        let admin = ws.admin().await;
        let serial_of = |bytes: &[u8]| {
            serde_json::from_slice::<Value>(bytes).unwrap()["binding"]["serial"]
                .as_i64()
                .unwrap()
        };
        let serial = serial_of(&original);
        admin
            .execute(
                "UPDATE tenantform_state.states SET serial = $2 WHERE tenant = $1",
                &[&b.id, &serial],
            )
            .await
            .unwrap();
        refused(&ws, &b.id, &apply_b, "serial");
        admin
            .execute(
                "UPDATE tenantform_state.states SET serial = $2 WHERE tenant = $1",
                &[&b.id, &serial_of(&newer)],
            )
            .await
            .unwrap();
    }
    put_state(&ws, &b.id, &newer).await;
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
}

/// Replaces the tenant's stored state with `bytes` (its file, or its row's document).
async fn put_state(ws: &Workspace, id: &str, bytes: &[u8]) {
    match ws.backend() {
        Backend::Local => std::fs::write(ws.state_file(id), bytes).unwrap(),
        Backend::Postgres => {
            let doc: Value = serde_json::from_slice(bytes).unwrap();
            let doc = tokio_postgres::types::Json(doc);
            ws.admin()
                .await
                .execute(
                    "UPDATE tenantform_state.states SET document = $2 WHERE tenant = $1",
                    &[&id, &doc],
                )
                .await
                .unwrap();
        }
    }
}

async fn a_key_rotation_with_the_fallback_then_enforced(backend: Backend) {
    let t = TenantDef::new("rot", "bronze");
    let mut ws = Workspace::with_backend(std::slice::from_ref(&t), backend).await;
    encrypt(&mut ws, "");
    ws.run(&["apply", "--auto-approve"]).ok();
    let password = password_of(&pulled(&ws, &t.id));

    // The new passphrase alone cannot read what the old one wrote.
    ws.set_env("TENANTFORM_STATE_PASSPHRASE", NEXT_PASSPHRASE);
    let err = refused(
        &ws,
        &t.id,
        &["apply", "--auto-approve"],
        "cannot be decrypted",
    );
    assert!(err.contains(&t.id) && err.contains("passphrase"), "{err}");
    assert!(
        !err.contains(PASSPHRASE) && !err.contains(NEXT_PASSPHRASE),
        "{err}"
    );

    // With the old one as fallback it reads; rekey writes it under the new one.
    ws.set_env("TENANTFORM_OLD_PASSPHRASE", PASSPHRASE);
    set_encryption(
        &ws,
        "key_provider = \"passphrase\"\nfallback_passphrase_env = \"TENANTFORM_OLD_PASSPHRASE\"",
    );
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
    ws.run(&["state", "rekey"]).ok().contains(&t.id);

    // The fallback goes, plain text is refused from now on: the state still reads.
    set_encryption(&ws, "key_provider = \"passphrase\"\nenforced = true");
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
    assert_eq!(password_of(&pulled(&ws, &t.id)), password);
    // The old passphrase alone no longer opens it.
    ws.set_env("TENANTFORM_STATE_PASSPHRASE", PASSPHRASE);
    refused(&ws, &t.id, &["plan"], "cannot be decrypted");
}

async fn a_plain_state_of_an_earlier_release_is_encrypted_on_its_next_write(backend: Backend) {
    let t = TenantDef::new("plain", "bronze");
    let mut ws = Workspace::with_backend(std::slice::from_ref(&t), backend).await;
    ws.run(&["apply", "--auto-approve"]).ok();
    let plain = ws.state_bytes(&t.id).unwrap();
    assert!(!is_envelope(&plain));
    let password = password_of(&serde_json::from_slice(&plain).unwrap());

    // Enforced refuses plain text, and leaves it.
    encrypt(&mut ws, "enforced = true");
    refused(&ws, &t.id, &["apply", "--auto-approve"], "is plain text");

    // Not enforced: it reads, and the next write encrypts it.
    set_encryption(&ws, "key_provider = \"passphrase\"");
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
    ws.run(&["state", "rekey"]).ok();
    let stored = ws.state_bytes(&t.id).unwrap();
    assert!(is_envelope(&stored));
    assert!(!contains(&stored, &password));
    set_encryption(&ws, "key_provider = \"passphrase\"\nenforced = true");
    assert_eq!(password_of(&pulled(&ws, &t.id)), password);
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
}

/// A new symmetric KMS key in moto (the stack's AWS endpoint), and its ARN.
async fn kms_key(alias: Option<&str>) -> String {
    let kms = aws_sdk_kms::Client::new(&aws_config().await);
    let key = kms.create_key().send().await.expect("CreateKey");
    let meta = key.key_metadata().expect("key metadata");
    if let Some(alias) = alias {
        kms.create_alias()
            .alias_name(alias)
            .target_key_id(meta.key_id())
            .send()
            .await
            .expect("CreateAlias");
    }
    meta.arn().expect("a key ARN").to_owned()
}

fn provider_of(bytes: &[u8]) -> String {
    let envelope: Value = serde_json::from_slice(bytes).expect("an envelope");
    envelope["key_provider"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The `aws_kms` provider against moto: a rotation from a passphrase to a KMS key (by
/// alias) and `state rekey`, then `enforced`; a saved plan sealed by KMS; another KMS
/// key refused naming the tenant and the provider, with nothing overwritten; a
/// rotation from KMS back to a passphrase.
async fn rotation_between_a_passphrase_and_kms_both_ways(backend: Backend) {
    let t = TenantDef::new("kms", "bronze");
    let mut ws = Workspace::with_backend(std::slice::from_ref(&t), backend).await;
    let alias = format!("alias/tenantform-state-{}", suffix());
    kms_key(Some(&alias)).await;
    let other_key = kms_key(None).await;

    // A KMS key that does not exist: the first write fails naming the provider and the
    // key, before anything is made (the same apply then succeeds with a key that does).
    let missing = format!("alias/tenantform-missing-{}", suffix());
    set_encryption(
        &ws,
        &format!("key_provider = \"aws_kms\"\nkms_key_id = \"{missing}\""),
    );
    let run = ws
        .run(&["apply", "--auto-approve"])
        .code(1)
        .contains("key provider aws_kms")
        .contains(&missing);
    assert!(!run.all().contains("panicked"), "{}", run.all());
    assert!(ws.state_bytes(&t.id).is_none(), "no state was written");

    encrypt(&mut ws, "");
    ws.run(&["apply", "--auto-approve"]).ok();
    let password = password_of(&pulled(&ws, &t.id));
    assert_eq!(provider_of(&ws.state_bytes(&t.id).unwrap()), "passphrase");

    // Passphrase to KMS: the passphrase is the fallback until rekey.
    set_encryption(
        &ws,
        &format!(
            "key_provider = \"aws_kms\"\nkms_key_id = \"{alias}\"\nfallback_passphrase_env = \"TENANTFORM_STATE_PASSPHRASE\""
        ),
    );
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
    ws.run(&["state", "rekey"]).ok().contains(&t.id);
    let stored = ws.state_bytes(&t.id).unwrap();
    assert_eq!(provider_of(&stored), "aws_kms");
    assert!(!contains(&stored, &password));
    let envelope: Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(envelope["kms"]["key_id"], alias.as_str());
    assert!(envelope.get("kdf").is_none());

    // KMS alone, enforced: the state reads, a saved plan round-trips.
    set_encryption(
        &ws,
        &format!("key_provider = \"aws_kms\"\nkms_key_id = \"{alias}\"\nenforced = true"),
    );
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
    assert_eq!(password_of(&pulled(&ws, &t.id)), password);
    let planfile = ws.dir.path().join("kms.plan");
    let planfile = planfile.to_str().unwrap();
    ws.run(&["plan", "--out", planfile]).ok();
    let plan_bytes = std::fs::read(planfile).unwrap();
    assert_eq!(provider_of(&plan_bytes), "aws_kms");
    ws.run(&["apply", planfile]).ok();

    // Another KMS key does not open it: a clear error, the state left as it was.
    set_encryption(
        &ws,
        &format!("key_provider = \"aws_kms\"\nkms_key_id = \"{other_key}\""),
    );
    let err = refused(
        &ws,
        &t.id,
        &["apply", "--auto-approve"],
        "cannot be decrypted with key provider aws_kms",
    );
    assert!(err.contains(&t.id) && err.contains(&other_key), "{err}");

    // KMS back to a passphrase.
    ws.set_env("TENANTFORM_NEXT_PASSPHRASE", NEXT_PASSPHRASE);
    set_encryption(
        &ws,
        &format!(
            "key_provider = \"passphrase\"\npassphrase_env = \"TENANTFORM_NEXT_PASSPHRASE\"\nfallback_kms_key_id = \"{alias}\""
        ),
    );
    ws.run(&["state", "rekey"]).ok().contains(&t.id);
    assert_eq!(provider_of(&ws.state_bytes(&t.id).unwrap()), "passphrase");
    set_encryption(
        &ws,
        "key_provider = \"passphrase\"\npassphrase_env = \"TENANTFORM_NEXT_PASSPHRASE\"\nenforced = true",
    );
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
    assert_eq!(password_of(&pulled(&ws, &t.id)), password);
}

on_both_backends!(
    state_round_trips_and_holds_no_secret_in_clear,
    altered_swapped_and_older_records_are_refused,
    a_key_rotation_with_the_fallback_then_enforced,
    a_plain_state_of_an_earlier_release_is_encrypted_on_its_next_write,
    rotation_between_a_passphrase_and_kms_both_ways,
);

#[tokio::test]
async fn weak_settings_and_a_wrong_plan_key_are_clear_errors() {
    let t = TenantDef::new("weak", "bronze");
    let mut ws = Workspace::new(std::slice::from_ref(&t)).await;
    ws.set_env("TENANTFORM_STATE_PASSPHRASE", "too short");
    set_encryption(&ws, "key_provider = \"passphrase\"");
    ws.run(&["plan"])
        .code(1)
        .contains("shorter than 16 characters");
    ws.set_env("TENANTFORM_STATE_PASSPHRASE", PASSPHRASE);
    ws.edit_platform(|s| s.replace("iterations = 200000", "iterations = 1000"));
    ws.run(&["plan"])
        .code(1)
        .contains("iterations = 1000 is below");
    set_encryption(&ws, "key_provider = \"passphrase\"");

    let planfile = ws.dir.path().join("t.plan");
    let planfile = planfile.to_str().unwrap();
    ws.run(&["plan", "--out", planfile]).ok();
    ws.set_env("TENANTFORM_STATE_PASSPHRASE", NEXT_PASSPHRASE);
    let before = std::fs::read(planfile).unwrap();
    ws.run(&["apply", planfile])
        .code(1)
        .contains(&format!("plan file {planfile} cannot be decrypted"));
    assert_eq!(std::fs::read(planfile).unwrap(), before);
}
