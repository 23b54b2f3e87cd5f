//! State in PostgreSQL, against a real server and real processes: compare-and-swap
//! writes, locks as leases (a killed holder taken over, a paused one fenced), history
//! and recovery, and moving state between the backends.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use tenantform::TenantId;
use tenantform::spec::{StateBackendKind, StateSettings};
use tenantform::state::{LockRequest, StateError, StateStore, TenantState};

fn settings(history: u32, lease_ttl_seconds: u64) -> StateSettings {
    StateSettings {
        backend: StateBackendKind::Postgres,
        history,
        lease_ttl_seconds,
    }
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

/// The tenant's stored serial and document, read straight from the database.
fn stored(ws: &Workspace, id: &str) -> Option<(i64, Value)> {
    ws.stored_state(id).map(|bytes| {
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        (doc["serial"].as_i64().expect("a serial"), doc)
    })
}

/// Resource statuses in the stored document.
fn statuses(doc: &Value) -> Vec<String> {
    doc["resources"]
        .as_object()
        .map(|m| {
            m.values()
                .map(|r| r["status"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Polls the tenant's row until `f` holds.
async fn wait_for_state(ws: &Workspace, id: &str, what: &str, f: impl Fn(&Value) -> bool) {
    let t0 = Instant::now();
    loop {
        if let Some((_, doc)) = stored(ws, id)
            && f(&doc)
        {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn lock_rows(ws: &Workspace) -> i64 {
    ws.admin()
        .await
        .query_one("SELECT count(*) FROM tenantform_state.locks", &[])
        .await
        .unwrap()
        .get(0)
}

/// (serial, writer's pid) of every version kept, newest first.
fn history(ws: &Workspace, id: &str) -> Vec<(u64, Option<u64>)> {
    let run = ws.run(&["state", "history", id, "--json"]).ok();
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["serial"].as_u64().unwrap(),
                v["written_by"]["pid"].as_u64(),
            )
        })
        .collect()
}

/// Two writers that read the same serial: one write lands, the other is refused with
/// an error that says the state moved on, to which serial, by whom and when.
#[tokio::test]
async fn two_writers_from_the_same_serial_one_wins_the_other_is_told_who_moved_it() {
    let ws = Workspace::new(&[]).await;
    let store = StateStore::postgres(&ws.pg_config(), &settings(10, 30)).unwrap();
    let tenant: TenantId = "cas-tenant".parse().unwrap();
    let lock = store
        .lock(&tenant, &LockRequest::new("cas-writer", Duration::ZERO))
        .await
        .unwrap();
    let mut first = TenantState::new(tenant.clone());
    store.write(&lock, &mut first).await.unwrap();
    assert_eq!(first.serial, 1);

    let mut a = store.load(&tenant).await.unwrap().unwrap();
    let mut b = a.clone();
    a.protected = true;
    let (ra, rb) = tokio::join!(store.write(&lock, &mut a), store.write(&lock, &mut b));
    let (won, lost, err) = match (ra, rb) {
        (Ok(()), Err(e)) => (a, b, e),
        (Err(e), Ok(())) => (b, a, e),
        other => panic!("exactly one write must land: {other:?}"),
    };
    assert!(matches!(err, StateError::Moved { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("the state of tenant cas-tenant moved on"),
        "{text}"
    );
    assert!(text.contains("this operation read serial 1"), "{text}");
    assert!(
        text.contains(&format!("serial 2 of lineage {}", won.lineage)),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "written by cas-writer (pid {} on {}",
            std::process::id(),
            host()
        )),
        "{text}"
    );
    assert!(text.contains("nothing was written"), "{text}");
    assert_eq!(lost.serial, 1, "the refused write keeps the serial it read");

    let now = store.load(&tenant).await.unwrap().unwrap();
    assert_eq!(now, won, "the winner's state, whole");
    let serials: Vec<u64> = store
        .history(&tenant)
        .await
        .unwrap()
        .iter()
        .map(|v| v.serial)
        .collect();
    assert_eq!(serials, [2, 1]);

    // Another lineage at the same serial is refused too.
    let mut stranger = TenantState::new(tenant.clone());
    stranger.serial = 2;
    let err = store.write(&lock, &mut stranger).await.unwrap_err();
    assert!(matches!(err, StateError::Moved { .. }), "{err}");

    // A second lock on the tenant is refused, naming this one with its lease.
    let err = store
        .lock(&tenant, &LockRequest::new("other", Duration::ZERO))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tenant cas-tenant is locked by cas-writer (pid"),
        "{err}"
    );
    assert!(err.contains("lease expires"), "{err}");
    lock.release().await.unwrap();
    assert_eq!(lock_rows(&ws).await, 0, "released at once");
}

/// A holder whose runtime stops (as a paused process would) loses its lease: another
/// takes the lock over once it expires, and the first holder's write is refused when it
/// goes on. The state is the new holder's, whole.
#[tokio::test]
async fn a_paused_holder_is_taken_over_after_its_lease_and_fenced() {
    let ws = Workspace::new(&[]).await;
    let tenant: TenantId = "fence-tenant".parse().unwrap();
    let store = StateStore::postgres(&ws.pg_config(), &settings(10, 1)).unwrap();
    {
        let lock = store
            .lock(&tenant, &LockRequest::new("setup", Duration::ZERO))
            .await
            .unwrap();
        store
            .write(&lock, &mut TenantState::new(tenant.clone()))
            .await
            .unwrap();
        lock.release().await.unwrap();
    }

    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let paused = {
        let (store, tenant) = (
            StateStore::postgres(&ws.pg_config(), &settings(10, 1)).unwrap(),
            tenant.clone(),
        );
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let lock = store
                    .lock(&tenant, &LockRequest::new("paused", Duration::ZERO))
                    .await
                    .unwrap();
                let mut state = store.load(&tenant).await.unwrap().unwrap();
                locked_tx.send(lock.info().id).unwrap();
                // Paused: this runtime runs nothing, heartbeat included, until told.
                go_rx.recv().unwrap();
                state.protected = true;
                let written = store.write(&lock, &mut state).await;
                (written, lock.is_lost())
            })
        })
    };
    let paused_id = locked_rx.recv().unwrap();

    let err = store
        .lock(&tenant, &LockRequest::new("taker", Duration::ZERO))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("is locked by paused"), "{err}");
    assert!(err.contains(&paused_id.to_string()), "{err}");

    // Waiting up to 10 s, the lock is taken over when the paused lease expires.
    let t0 = Instant::now();
    let taker = store
        .lock(&tenant, &LockRequest::new("taker", Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    let mut state = store.load(&tenant).await.unwrap().unwrap();
    store.write(&taker, &mut state).await.unwrap();
    assert_eq!(state.serial, 2);

    go_tx.send(()).unwrap();
    let (written, lost) = paused.join().unwrap();
    let err = written.unwrap_err();
    assert!(matches!(err, StateError::Fenced { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("no longer holds the lock of tenant fence-tenant"),
        "{text}"
    );
    assert!(text.contains("its lease expired and taker (pid"), "{text}");
    assert!(text.contains("its write was refused"), "{text}");
    assert!(lost, "the paused holder knows it lost the lock");

    let now = store.load(&tenant).await.unwrap().unwrap();
    assert_eq!(now, state, "the new holder's state, untouched");
    assert!(!now.protected);
    // The paused holder's lock, dropped, did not release the new holder's.
    store.settle().await;
    let holder = store.lock_holder(&tenant).await.unwrap().unwrap();
    assert_eq!(holder.id, taker.info().id);
    taker.release().await.unwrap();
}

/// A CLI holder killed with SIGKILL keeps the tenant locked until its lease expires;
/// then the next run takes the lock over and converges from the last checkpoint.
#[tokio::test]
async fn a_killed_holder_is_taken_over_once_its_lease_expires() {
    let t = TenantDef::new("lease-kill", "bronze");
    let ws = Workspace::with_backend(std::slice::from_ref(&t), Backend::Postgres).await;
    ws.set_lease_ttl(3);
    ws.slow_down_ddl(0.3).await;

    let mut holder = ws.spawn(&["apply", "--auto-approve", "--parallelism", "1"]);
    let pid = holder.id();
    wait_for_state(&ws, &t.id, "a checkpoint of the first run", |d| {
        statuses(d).iter().any(|s| s == "creating")
    })
    .await;
    holder.kill().unwrap();
    holder.wait().unwrap();

    // The dead holder's lock stays until its lease expires: the next run waits for
    // that, then takes the lock over.
    let row = ws
        .admin()
        .await
        .query_one(
            "SELECT pid, host, expires_at > now() FROM tenantform_state.locks WHERE tenant = $1",
            &[&t.id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0) as u32, pid);
    assert_eq!(row.get::<_, String>(1), host());
    assert!(row.get::<_, bool>(2), "the lease has not expired yet");
    ws.remove_slow_down().await;
    let run = ws
        .run(&["apply", "--auto-approve", "--lock-timeout", "30s"])
        .ok();
    assert!(run.stdout.contains("Apply complete!"), "{}", run.all());
    assert!(
        run.stderr
            .contains("took over a lock whose holder let its lease expire"),
        "{}",
        run.all()
    );
    assert_eq!(lock_rows(&ws).await, 0, "the lock is released");
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
    let (_, doc) = stored(&ws, &t.id).unwrap();
    assert_eq!(
        statuses(&doc),
        vec!["created"; PER_TENANT],
        "every resource once, created"
    );
}

/// A CLI holder stopped (SIGSTOP) past its lease is taken over; when it resumes, its
/// next write is refused and it stops: the state stays the new holder's, serials only
/// grow, and the tenant converges.
#[tokio::test]
async fn a_stopped_holder_is_fenced_out_when_it_resumes() {
    let t = TenantDef::new("lease-stop", "bronze");
    let ws = Workspace::with_backend(std::slice::from_ref(&t), Backend::Postgres).await;
    ws.set_lease_ttl(2);
    ws.slow_down_ddl(0.5).await;

    let stopped = ws.spawn(&["apply", "--auto-approve", "--parallelism", "1"]);
    let stopped_pid = u64::from(stopped.id());
    wait_for_state(&ws, &t.id, "a create in flight after another", |d| {
        let s = statuses(d);
        s.iter().any(|s| s == "created") && s.iter().any(|s| s == "creating")
    })
    .await;
    signal(&stopped, "STOP");
    let (serial_at_stop, _) = stored(&ws, &t.id).unwrap();

    // Past the lease (2 s); the stopped process cannot renew it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    ws.remove_slow_down().await;
    let taker = ws
        .run(&["apply", "--auto-approve", "--lock-timeout", "30s"])
        .ok();
    assert!(taker.stderr.contains("took over a lock"), "{}", taker.all());
    let (serial_after, doc_after) = stored(&ws, &t.id).unwrap();
    assert!(serial_after > serial_at_stop);

    signal(&stopped, "CONT");
    let resumed = finish(stopped).code(1);
    // Which notices first depends on the scheduler: the write it tries (refused by the
    // fence), or the lease's heartbeat (no step starts any more). Either way it says
    // the lock is gone, and below, it wrote nothing.
    let fenced = resumed.stderr.contains(&format!(
        "this operation no longer holds the lock of tenant {}",
        t.id
    )) && resumed.stderr.contains("its write was refused");
    let stopped_by_heartbeat = resumed.stderr.contains(&format!(
        "tenant {} is no longer this apply's to change",
        t.id
    ));
    assert!(fenced || stopped_by_heartbeat, "{}", resumed.all());

    let (serial_now, doc_now) = stored(&ws, &t.id).unwrap();
    assert_eq!(serial_now, serial_after, "the stopped run wrote nothing");
    assert_eq!(doc_now, doc_after);
    let versions = history(&ws, &t.id);
    assert!(
        versions.windows(2).all(|w| w[0].0 > w[1].0),
        "serials only grow: {versions:?}"
    );
    assert!(
        versions
            .iter()
            .filter(|(serial, _)| *serial as i64 > serial_at_stop)
            .all(|(_, pid)| *pid != Some(stopped_pid)),
        "nothing after the stop is the stopped run's: {versions:?}"
    );
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
    assert_eq!(statuses(&doc_now), vec!["created"; PER_TENANT]);
}

/// `state history` keeps `[state] history` versions; `state rollback` writes an earlier
/// one as the next serial, and apply converges from there. Tenants' own roles cannot
/// read the state (it holds their passwords).
#[tokio::test]
async fn history_is_bounded_and_rollback_recovers_a_version() {
    let t = TenantDef::new("history", "bronze");
    let ws = Workspace::with_backend(std::slice::from_ref(&t), Backend::Postgres).await;
    ws.edit_platform(|s| s.replace("history = 10", "history = 3"));
    ws.run(&["apply", "--auto-approve"]).ok();

    let versions = history(&ws, &t.id);
    let (current, _) = stored(&ws, &t.id).unwrap();
    let current = current as u64;
    assert_eq!(
        versions.iter().map(|v| v.0).collect::<Vec<_>>(),
        [current, current - 1, current - 2]
    );
    let text = ws.run(&["state", "history", &t.id]).ok().stdout;
    assert!(text.contains("(current)"), "{text}");
    assert!(text.contains("apply (pid"), "{text}");

    // The version before the last create finished: that resource is `creating`.
    let old = current - 1;
    ws.run(&["state", "rollback", &t.id, "--serial", "9999"])
        .code(1)
        .contains(&format!(
            "no state version with serial 9999; the versions kept are: {current}, {old}, {}",
            current - 2
        ));
    ws.run(&["state", "rollback", &t.id, "--serial", &old.to_string()])
        .ok()
        .contains(&format!(
            "Recovered version {old} of tenant {}: it is now serial {}",
            t.id,
            current + 1
        ));
    let (serial, doc) = stored(&ws, &t.id).unwrap();
    assert_eq!(serial as u64, current + 1);
    assert!(
        statuses(&doc).iter().any(|s| s == "creating"),
        "the recovered version is from before the last create finished"
    );
    ws.run(&["plan", "--detailed-exitcode"]).code(2);
    ws.run(&["apply", "--auto-approve"]).ok();
    ws.run(&["plan", "--detailed-exitcode"]).code(0);

    let own = ws
        .tenant_client(&t)
        .await
        .expect("the tenant's role logs in");
    let err = own
        .query("SELECT document FROM tenantform_state.states", &[])
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "{err}"
    );
}

/// `state migrate` moves every tenant local -> PostgreSQL -> local with serial,
/// lineage and history; the plan is clean on each side; a locked tenant stops it before
/// anything moves.
#[tokio::test]
async fn migrate_moves_state_to_postgres_and_back() {
    let a = TenantDef::new("mig-a", "bronze");
    let b = TenantDef::new("mig-b", "silver");
    let mut ws = Workspace::new(&[a.clone(), b.clone()]).await;
    ws.run(&["apply", "--auto-approve"]).ok();
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
    let backup = |ws: &Workspace, id: &str| -> Value {
        let path = ws.state().join(format!("tenants/{id}.json.backup"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let before: Vec<(Value, Value)> = [&a, &b]
        .iter()
        .map(|t| (ws.state_json(&t.id).unwrap(), backup(&ws, &t.id)))
        .collect();

    // Refused while a tenant is locked: nothing moves.
    {
        let local = StateStore::local(ws.state());
        let held = local
            .lock(
                &a.id.parse().unwrap(),
                &LockRequest::new("test-holder", Duration::ZERO),
            )
            .await
            .unwrap();
        ws.run(&["state", "migrate", "--to", "postgres"])
            .code(1)
            .contains(&format!("tenant {} is locked by test-holder", a.id))
            .contains("nothing was moved");
        assert!(stored(&ws, &a.id).is_none());
        assert!(stored(&ws, &b.id).is_none());
        assert_eq!(ws.state_json(&b.id).unwrap(), before[1].0);
        held.release().await.unwrap();
    }

    let run = ws.run(&["state", "migrate", "--to", "postgres"]).ok();
    assert!(
        run.stdout.contains("Moved the state of 2 tenants"),
        "{}",
        run.all()
    );
    assert!(
        !ws.state_file(&a.id).exists(),
        "the local state is moved, not copied"
    );
    ws.set_env("TENANTFORM_STATE_BACKEND", "postgres");
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
    for (t, (state, backup)) in [&a, &b].iter().zip(&before) {
        let (serial, doc) = stored(&ws, &t.id).unwrap();
        assert_eq!(serial, state["serial"].as_i64().unwrap());
        assert_eq!(doc["lineage"], state["lineage"]);
        assert_eq!(&doc, state, "the document as it was");
        let serials: Vec<u64> = history(&ws, &t.id).iter().map(|v| v.0).collect();
        assert_eq!(
            serials,
            [
                state["serial"].as_u64().unwrap(),
                backup["serial"].as_u64().unwrap()
            ],
            "the state and its backup are the history"
        );
    }

    ws.run(&["state", "migrate", "--to", "local"]).ok();
    assert!(stored(&ws, &a.id).is_none(), "moved, not copied");
    ws.set_env("TENANTFORM_STATE_BACKEND", "local");
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
    for (t, (state, old_backup)) in [&a, &b].iter().zip(&before) {
        assert_eq!(&ws.state_json(&t.id).unwrap(), state);
        assert_eq!(&backup(&ws, &t.id), old_backup);
    }
    // Again, with nothing left in PostgreSQL: nothing to move.
    ws.run(&["state", "migrate", "--to", "local"])
        .ok()
        .contains("Moved the state of 0 tenants");
}
