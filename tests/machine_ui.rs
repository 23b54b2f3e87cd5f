//! What `apply` and `destroy` print for a machine and for a person at a terminal:
//! `--json` streams Terraform's machine-readable UI (every stdout line one JSON
//! message, no secret anywhere), and a terminal shows the steps in flight as spinners
//! with their elapsed time (driven through a real terminal, tmux).

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// Every stdout line as a JSON message with the common fields.
fn messages(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| {
            let m: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}\n{stdout}"));
            assert_eq!(m["@module"], "tenantform.ui", "{l}");
            assert!(m["@level"].is_string() && m["@message"].is_string(), "{l}");
            let at = m["@timestamp"].as_str().unwrap_or_default();
            chrono::DateTime::parse_from_rfc3339(at)
                .unwrap_or_else(|e| panic!("@timestamp {at:?} is not RFC 3339 ({e}): {l}"));
            m
        })
        .collect()
}

fn of_type<'a>(ms: &'a [Value], kind: &str) -> Vec<&'a Value> {
    ms.iter().filter(|m| m["type"] == kind).collect()
}

/// apply_start and apply_complete come in pairs, start first, one per resource.
fn starts_and_completes(ms: &[Value], action: &str) -> Vec<String> {
    let mut open: BTreeMap<String, usize> = BTreeMap::new();
    let mut done = Vec::new();
    for (i, m) in ms.iter().enumerate() {
        let addr = m["hook"]["resource"]["addr"].as_str().unwrap_or_default();
        match m["type"].as_str() {
            Some("apply_start") => {
                assert_eq!(m["hook"]["action"], action, "{m}");
                assert!(
                    open.insert(addr.to_owned(), i).is_none(),
                    "{addr} started twice"
                );
            }
            Some("apply_complete") => {
                assert!(
                    open.remove(addr).is_some(),
                    "{addr} completed without a start"
                );
                assert!(m["hook"]["elapsed_seconds"].is_u64(), "{m}");
                done.push(addr.to_owned());
            }
            Some("apply_errored") => panic!("a step failed: {m}"),
            _ => {}
        }
    }
    assert!(open.is_empty(), "started, never completed: {open:?}");
    done.sort();
    done
}

fn summary<'a>(ms: &'a [Value], operation: &str) -> &'a Value {
    let s = of_type(ms, "change_summary");
    let s = s
        .iter()
        .find(|m| m["changes"]["operation"] == operation)
        .unwrap_or_else(|| panic!("no change_summary of {operation}"));
    &s["changes"]
}

#[tokio::test]
async fn apply_and_destroy_under_json_stream_one_message_per_line() {
    let t = TenantDef::new("mui", "bronze");
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    let apply = ws.run(&["apply", "--auto-approve", "--json"]).ok();
    let ms = messages(&apply.stdout);
    let types: Vec<&str> = ms.iter().map(|m| m["type"].as_str().unwrap()).collect();
    println!("apply --json types: {types:?}");
    assert_eq!(types[0], "version");
    assert_eq!(ms[0]["ui"], "1.2");
    assert_eq!(ms[0]["tenantform"], env!("CARGO_PKG_VERSION"));
    assert_eq!(*types.last().unwrap(), "apply_report");

    let planned: Vec<String> = of_type(&ms, "planned_change")
        .iter()
        .map(|m| {
            assert_eq!(m["change"]["action"], "create", "{m}");
            m["change"]["resource"]["addr"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(planned.len() >= 5, "{planned:?}");
    let plan = summary(&ms, "plan");
    assert_eq!(plan["add"], planned.len());
    assert_eq!(
        (plan["change"].clone(), plan["remove"].clone()),
        (0.into(), 0.into())
    );
    // Every change planned is made, each between its start and its completion, and
    // the plan comes before any step.
    let mut sorted = planned.clone();
    sorted.sort();
    assert_eq!(starts_and_completes(&ms, "create"), sorted);
    let first_step = types.iter().position(|t| *t == "apply_start").unwrap();
    let last_planned = types.iter().rposition(|t| *t == "planned_change").unwrap();
    assert!(last_planned < first_step, "{types:?}");
    let applied = summary(&ms, "apply");
    assert_eq!(applied["add"], planned.len());
    assert_eq!(
        (applied["change"].clone(), applied["remove"].clone()),
        (0.into(), 0.into())
    );
    // The physical id of what was made, where it has one: the schema's name.
    let schema = ms
        .iter()
        .find(|m| {
            m["type"] == "apply_complete"
                && m["hook"]["resource"]["resource"] == "postgres_schema.main"
        })
        .unwrap();
    assert_eq!(schema["hook"]["id_key"], "id");
    assert_eq!(schema["hook"]["id_value"], t.pg_name(), "{schema}");
    assert_eq!(
        schema["hook"]["resource"]["module"],
        format!("module.tenant[\"{}\"]", t.id)
    );
    // Outputs: where the credentials are, never the passwords (sensitive ones would be
    // typed and valueless; there are none left).
    let outputs = of_type(&ms, "outputs");
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0]["tenant"], t.id.as_str());
    let all = outputs[0]["outputs"].as_object().unwrap();
    assert!(
        all["credentials_secret_arn"]["value"]
            .as_str()
            .is_some_and(|arn| arn.starts_with("arn:aws:secretsmanager:")),
        "{}",
        outputs[0]
    );
    assert!(
        all.keys().all(|k| !k.contains("password")),
        "{}",
        outputs[0]
    );
    assert!(
        all.values()
            .filter(|o| o["sensitive"] == true)
            .all(|o| o.get("value").is_none())
    );
    // The apply report is the last message.
    let report = &ms.last().unwrap()["report"];
    assert_eq!(report["format_version"], "1.0");
    assert_eq!(report["tenants"][0]["outcome"], "applied", "{report}");
    // A person watching still has the lines, on stderr.
    assert!(
        apply.stderr.contains(": Creation complete after"),
        "{}",
        apply.stderr
    );
    let password = ws.password(&t.id).await;
    assert!(password.len() >= 16);
    assert!(!apply.all().contains(&password), "the password leaked");

    // Nothing to do: the stream says so in the same vocabulary.
    let again = messages(&ws.run(&["apply", "--auto-approve", "--json"]).ok().stdout);
    assert_eq!(again[0]["type"], "version");
    assert!(of_type(&again, "planned_change").is_empty());
    assert_eq!(summary(&again, "plan")["add"], 0);
    assert_eq!(summary(&again, "apply")["add"], 0);
    assert_eq!(again.last().unwrap()["type"], "apply_report");
    assert!(again.last().unwrap()["report"].is_null());

    let destroy = ws.run(&["destroy", "--auto-approve", "--json"]).ok();
    let ms = messages(&destroy.stdout);
    let types: Vec<&str> = ms.iter().map(|m| m["type"].as_str().unwrap()).collect();
    println!("destroy --json types: {types:?}");
    assert_eq!(types[0], "version");
    let planned = of_type(&ms, "planned_change");
    assert_eq!(planned.len(), sorted.len());
    assert!(planned.iter().all(|m| m["change"]["action"] == "delete"));
    assert_eq!(summary(&ms, "plan")["remove"], sorted.len());
    assert_eq!(starts_and_completes(&ms, "delete"), sorted);
    let destroyed = summary(&ms, "destroy");
    assert_eq!(destroyed["remove"], sorted.len());
    assert_eq!(destroyed["add"], 0);
    assert!(of_type(&ms, "outputs").is_empty());
    assert_eq!(*types.last().unwrap(), "apply_report");
    assert!(!destroy.all().contains(&password), "the password leaked");
}

/// Ends the tmux server of a test (its own socket) whatever happens.
struct Tmux {
    socket: std::path::PathBuf,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket);
        c
    }

    fn pane(&self, history: bool) -> String {
        let mut c = self.cmd();
        c.args(["capture-pane", "-p", "-t", "tf"]);
        if history {
            c.args(["-S", "-"]);
        }
        let out = c.output().expect("tmux runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A Gold apply in a real terminal: while it runs, the pane shows a step in flight
/// with its elapsed time; at the end, "Apply complete!". Then a destroy with
/// `--color never` in the same terminal prints plain lines, as without a terminal.
#[tokio::test]
async fn a_terminal_shows_the_steps_in_flight_with_their_elapsed_time() {
    if Command::new("tmux").arg("-V").output().is_err() {
        println!("tmux is not installed (scripts/test installs it): skipped");
        return;
    }
    let t = TenantDef::new("tty", "gold");
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    // The schema takes a few seconds, so that a snapshot finds it in flight.
    ws.slow_down_command("CREATE SCHEMA", 4.0).await;

    // The command line of Workspace::command, but with colour left to the terminal.
    let probe = ws.command(&[]);
    let mut script = String::from("unset NO_COLOR CLICOLOR_FORCE TENANTFORM_LOG\n");
    for (k, v) in probe.get_envs() {
        if let (Some(k), Some(v)) = (k.to_str(), v.and_then(|v| v.to_str())) {
            script.push_str(&format!("export {k}={}\n", quote(v)));
        }
    }
    let tf = format!(
        "{} --specs {} --state {}",
        quote(bin().to_str().unwrap()),
        quote(ws.specs().to_str().unwrap()),
        quote(ws.state().to_str().unwrap())
    );
    script.push_str(&format!(
        "{tf} apply --auto-approve; echo \"apply exited $?\"\n\
         {tf} destroy --auto-approve --color never; echo \"destroy exited $?\"\n\
         sleep 600\n"
    ));
    let dir = ws.dir.path().to_path_buf();
    let script_path = dir.join("tty.sh");
    std::fs::write(&script_path, script).unwrap();
    let tmux = Tmux {
        socket: dir.join("tmux.sock"),
    };
    let started = tmux
        .cmd()
        .args(["new-session", "-d", "-s", "tf", "-x", "150", "-y", "60"])
        .arg(format!("sh {}", quote(script_path.to_str().unwrap())))
        .status()
        .unwrap();
    assert!(started.success(), "tmux starts");

    let in_flight = format!("{}/postgres_schema.main: Creating... [", t.id);
    let mut seen_in_flight = None;
    let mut last = String::new();
    let t0 = Instant::now();
    let deadline = Duration::from_secs(240);
    loop {
        let pane = tmux.pane(false);
        if pane != last {
            // The bottom of the pane, where the spinners are.
            let lines: Vec<&str> = pane.trim_end().lines().collect();
            println!(
                "--- pane at {:.1}s (last lines) ---\n{}",
                t0.elapsed().as_secs_f64(),
                lines[lines.len().saturating_sub(14)..].join("\n")
            );
            last = pane.clone();
        }
        // The schema, slowed down to 4 s, in flight for 2 s or more.
        if seen_in_flight.is_none() && !pane.contains("Apply complete!") {
            seen_in_flight = pane
                .lines()
                .map(str::trim_end)
                .find(|l| {
                    l.split_once(&in_flight)
                        .and_then(|(_, rest)| rest.strip_suffix("s elapsed]"))
                        .and_then(|secs| secs.parse::<u64>().ok())
                        .is_some_and(|secs| secs >= 2)
                })
                .map(str::to_owned);
        }
        if pane.contains("destroy exited") {
            break;
        }
        assert!(
            t0.elapsed() < deadline,
            "no end within {deadline:?}:\n{pane}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let history = tmux.pane(true);
    println!("--- whole pane history ---\n{}", history.trim_end());
    let line = seen_in_flight.expect("a snapshot shows the schema in flight for 2 s or more");
    println!("in flight: {line}");
    assert!(history.contains("Apply complete! Resources:"), "{history}");
    assert!(history.contains("apply exited 0"), "{history}");
    // The live view prints a step's end, never its start: the spinner showed that.
    let (applied, destroyed) = history.split_once("apply exited 0").unwrap();
    assert!(applied.contains(": Creation complete after"), "{applied}");
    assert!(!applied.contains(": Creating...\n"), "{applied}");
    // --color never: plain lines, a start and an end per step.
    assert!(destroyed.contains(": Destroying...\n"), "{destroyed}");
    assert!(
        destroyed.contains(": Destruction complete after"),
        "{destroyed}"
    );
    assert!(destroyed.contains("Destroy complete!"), "{destroyed}");
    assert!(destroyed.contains("destroy exited 0"), "{destroyed}");
}
