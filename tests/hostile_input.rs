//! Input that tries to reach past its tenant or past what a service accepts: a state
//! file naming another tenant's objects, a state with a dependency cycle, spec values a
//! service would refuse, platform values taken on trust. Each is refused before anything
//! runs, with the file, the field and a fix, and nothing changes.

mod support;

use std::fs;

use support::{TenantDef, Workspace};

/// A `depends_on` cycle in a state file is found when the state is loaded, by every
/// command, naming the file and the resources in the cycle; the file is not touched.
#[tokio::test(flavor = "multi_thread")]
async fn a_state_with_a_dependency_cycle_is_refused_when_loaded() {
    let t = TenantDef::new("cycle", "bronze");
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    ws.run(&["apply", "--auto-approve"]).ok();
    let path = ws.state_file(&t.id);
    let mut state = ws.state_json(&t.id).unwrap();
    state["resources"]["postgres_schema.main"]["depends_on"] =
        serde_json::json!([format!("{}/postgres_table.documents", t.id)]);
    let content = serde_json::to_string_pretty(&state).unwrap();
    fs::write(&path, &content).unwrap();
    for args in [
        &["plan"][..],
        &["destroy", "--auto-approve"],
        &["state", "list"],
    ] {
        let run = ws.run(args).code(1);
        for needle in [
            path.display().to_string(),
            "dependency cycle".into(),
            format!("{}/postgres_schema.main", t.id),
            format!("{}/postgres_table.documents", t.id),
        ] {
            assert!(
                run.stderr.contains(&needle),
                "{args:?}: {needle:?} in:\n{}",
                run.stderr
            );
        }
        assert_eq!(fs::read_to_string(&path).unwrap(), content);
    }
}
