//! Exit codes a CI job can trust, from the binary itself (no stack needed: `validate`
//! reads only the spec files): 2 means only "changes present", a usage error is 1, help
//! is 0, and a closed stdout ends the command quietly.

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn tenantform() -> Command {
    let specs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("specs");
    let mut c = Command::new(env!("CARGO_BIN_EXE_tenantform"));
    c.arg("--specs").arg(specs);
    c
}

#[test]
fn a_usage_error_exits_1_not_2_and_names_the_flag() {
    let out = tenantform()
        .args(["plan", "--detailed-exitcode", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}

#[test]
fn help_is_an_answer_and_exits_0() {
    let out = tenantform().args(["plan", "--help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("--detailed-exitcode"));
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    // The reading end is closed before the command starts: its first line meets a
    // closed pipe, as `tenantform ... | head -0` would.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = tenantform()
        .arg("validate")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "nothing on stderr: {stderr}");
}

#[test]
fn validate_with_an_open_stdout_still_succeeds() {
    let out = tenantform().arg("validate").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("The specs are valid"));
}

/// `validate --json`: Terraform's `validate -json` shape on stdout, exit 1 when a spec
/// is wrong, with the file, line, field and fix of each problem, and nothing on stderr.
#[test]
fn validate_json_reports_each_problem_with_its_place_and_fix() {
    let ok = tenantform().args(["validate", "--json"]).output().unwrap();
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    let report: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(report["valid"], true);
    assert_eq!(report["error_count"], 0);

    let dir = tempfile::tempdir().unwrap();
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("specs");
    std::fs::copy(
        source.join("platform.toml"),
        dir.path().join("platform.toml"),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("tenants")).unwrap();
    let tenant = std::fs::read_dir(source.join("tenants"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "toml"))
        .unwrap();
    let text = std::fs::read_to_string(&tenant).unwrap();
    let tier_line = text.lines().position(|l| l.starts_with("tier")).unwrap() + 1;
    let broken: String = text
        .lines()
        .map(|l| {
            if l.starts_with("tier") {
                "tier = \"platinum\"".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let file = dir.path().join("tenants").join(tenant.file_name().unwrap());
    std::fs::write(&file, broken).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_tenantform"))
        .arg("--specs")
        .arg(dir.path())
        .args(["validate", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["error_count"], 1, "{report:#}");
    let d = &report["diagnostics"][0];
    assert_eq!(d["severity"], "error");
    assert_eq!(d["field"], "tier", "{d:#}");
    assert_eq!(d["range"]["filename"], file.display().to_string());
    assert_eq!(d["range"]["start"]["line"], tier_line, "{d:#}");
    assert!(d["summary"].as_str().unwrap().contains("platinum"), "{d:#}");
    assert!(!d["fix"].as_str().unwrap().is_empty(), "{d:#}");
}

#[test]
fn an_error_under_json_is_a_json_diagnostic_on_stdout_too() {
    let out = Command::new(env!("CARGO_BIN_EXE_tenantform"))
        .args(["plan", "--json", "--specs", "/nonexistent-specs-dir"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is one JSON object ({e}): {stdout}"));
    assert_eq!(line["@level"], "error");
    assert_eq!(line["type"], "diagnostic");
    assert_eq!(line["diagnostic"]["severity"], "error");
    assert!(
        line["diagnostic"]["summary"]
            .as_str()
            .unwrap()
            .contains("problem in the specs"),
        "{line}"
    );
    assert!(
        line["diagnostic"]["detail"]
            .as_str()
            .unwrap()
            .contains("/nonexistent-specs-dir/platform.toml"),
        "{line}"
    );
    // The person watching still reads it as text.
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("Error: "));

    // Without --json, stdout stays empty.
    let out = Command::new(env!("CARGO_BIN_EXE_tenantform"))
        .args(["plan", "--specs", "/nonexistent-specs-dir"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.stdout.is_empty());
}

#[test]
fn completions_and_the_manual_page_cover_every_command() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tenantform"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let bash = run(&["completions", "bash"]);
    for word in [
        "_tenantform",
        "force-unlock",
        "--auto-approve",
        "--detailed-exitcode",
    ] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    // The script is valid bash.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("tenantform.bash");
    std::fs::write(&script, &bash).unwrap();
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(syntax.success(), "bash -n refused the completion script");
    // zsh and fish write a long flag without its dashes in their own syntax.
    for shell in ["zsh", "fish"] {
        let script = run(&["completions", shell]);
        assert!(
            script.contains("auto-approve") && script.contains("force-unlock"),
            "{shell}"
        );
    }

    let page = run(&["man"]);
    assert!(page.contains("\n.TH tenantform 1"), "{page}");
    for section in [
        "TENANTFORM APPLY",
        "TENANTFORM STATE",
        "TENANTFORM FORCE-UNLOCK",
    ] {
        assert!(page.contains(section), "the page lacks {section}");
    }
    assert!(
        page.contains("auto\\-approve"),
        "apply's flags are on the page"
    );
}

/// A prompt cannot be answered on a JSON stream: `apply --json` without
/// `--auto-approve` refuses before anything else (as Terraform does), and still says so
/// in the stream's own vocabulary, one JSON message per line.
#[test]
fn apply_under_json_needs_auto_approve_and_says_so_as_json() {
    let out = tenantform()
        .args(["apply", "--json", "--state", "/nonexistent-state-dir"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0]["type"], "version");
    assert_eq!(lines[1]["type"], "diagnostic");
    assert_eq!(lines[1]["@module"], "tenantform.ui");
    assert!(
        lines[1]["diagnostic"]["summary"]
            .as_str()
            .unwrap()
            .contains("--auto-approve"),
        "{stdout}"
    );
}
