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
