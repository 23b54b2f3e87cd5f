//! Terminal views of runs: the list, one run, and its events as they happen.

use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};

use super::queue::{EventKind, RunEvent, WorkerRecord};
use super::worker::{BlockedBy, RunView};

/// How long ago, shortly (`12s`, `4m`, `3h`, `2d`).
fn ago(at: DateTime<Utc>) -> String {
    let s = (Utc::now() - at).num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn blocked(b: &BlockedBy) -> String {
    match b {
        BlockedBy::Run {
            id,
            operation,
            status,
            ..
        } => format!("run {} ({operation}, {status})", &id.to_string()[..8]),
        BlockedBy::Lock { holder } => format!("lock held by {holder}"),
    }
}

/// The header of `runs list`.
pub fn list_header() -> String {
    format!(
        "{:<8}  {:<24} {:<9} {:<20} {:>7}  {:>4}  {:>5}  BLOCKED BY",
        "RUN", "TENANT", "OPERATION", "STATUS", "ATTEMPT", "AGE", "QUEUE"
    )
}

/// One line of `runs list`.
pub fn run_line(v: &RunView) -> String {
    let r = &v.run;
    format!(
        "{:<8}  {:<24} {:<9} {:<20} {:>7}  {:>4}  {:>5}  {}",
        r.short_id(),
        r.tenant,
        r.operation.as_str(),
        r.status.as_str(),
        r.attempt,
        ago(r.created_at),
        v.queue_position
            .map(|p| format!("#{p}"))
            .unwrap_or_else(|| "-".into()),
        v.blocked_by.as_ref().map(blocked).unwrap_or_default()
    )
    .trim_end()
    .to_owned()
}

/// The footer of `runs list`: who executes runs.
pub fn workers_line(workers: &[WorkerRecord]) -> String {
    if workers.is_empty() {
        return "Workers: none alive (with [runs] executor = \"workers\", queued runs wait for `tenantform worker`).".into();
    }
    let slots: i32 = workers.iter().map(|w| w.concurrency).sum();
    format!(
        "Workers: {} alive, {slots} slot{} ({}).",
        workers.len(),
        if slots == 1 { "" } else { "s" },
        workers
            .iter()
            .map(|w| w.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// `runs show`: the run, where it stands, and its outcome.
pub fn run_details(v: &RunView) -> String {
    let r = &v.run;
    let mut out = String::new();
    let when = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let _ = writeln!(out, "Run {} ({} of tenant {})", r.id, r.operation, r.tenant);
    let _ = writeln!(out, "  status:       {}", r.status);
    let _ = writeln!(out, "  requested by: {}", r.requested_by);
    if let Some(m) = &r.message {
        let _ = writeln!(out, "  message:      {m}");
    }
    if let Some(q) = &r.request_id {
        let _ = writeln!(out, "  request:      {q}");
    }
    let _ = writeln!(out, "  auto-apply:   {}", r.auto_apply);
    if r.rotate {
        let _ = writeln!(out, "  rotate:       the tenant's passwords are set anew");
    }
    let _ = writeln!(out, "  attempt:      {}", r.attempt);
    if let Some(p) = v.queue_position {
        let _ = writeln!(out, "  queue:        #{p}");
    }
    if let Some(b) = &v.blocked_by {
        let _ = writeln!(out, "  blocked by:   {}", blocked(b));
    }
    if let Some(owner) = &r.lease_owner {
        let _ = writeln!(
            out,
            "  lease:        {owner}{}",
            r.lease_expires_at
                .map(|t| format!(", until {}", when(&t)))
                .unwrap_or_default()
        );
    }
    if let Some(by) = &r.cancel_requested_by {
        let _ = writeln!(out, "  cancel:       requested by {by}");
    }
    let mut stamps: Vec<_> = r.status_timestamps.iter().collect();
    stamps.sort_by_key(|(_, t)| **t);
    for (k, t) in stamps {
        let _ = writeln!(out, "  {:<13} {}", format!("{k}:"), when(t));
    }
    if let Some(e) = &r.error {
        let _ = writeln!(out, "  error:        {e}");
    }
    if let Some(summary) = result_summary(r.result.as_ref()) {
        let _ = writeln!(out, "  result:       {summary}");
    }
    if r.status == super::RunStatus::Planned {
        let _ = writeln!(
            out,
            "  The plan waits for confirmation: `tenantform runs apply {}` (or `runs discard`).",
            r.short_id()
        );
    }
    out
}

/// One line saying what a run's result holds.
fn result_summary(result: Option<&serde_json::Value>) -> Option<String> {
    let r = result?;
    if let Some(request) = r.get("request") {
        let checks = r["checks"].as_array().map_or(0, |c| c.len());
        let passed = r["checks"]
            .as_array()
            .map_or(0, |c| c.iter().filter(|c| c["passed"] == true).count());
        return Some(format!(
            "request {} is {}{}",
            request["id"].as_str().unwrap_or("?"),
            request["status"].as_str().unwrap_or("?"),
            if checks > 0 {
                format!(", {passed} of {checks} checks passed")
            } else {
                String::new()
            }
        ));
    }
    if let Some(report) = r.get("report") {
        let done = |step: &str| {
            report["tenants"].as_array().map_or(0, |ts| {
                ts.iter()
                    .flat_map(|t| t["steps"].as_array().cloned().unwrap_or_default())
                    .filter(|s| s["step"] == step && s["outcome"]["status"] == "done")
                    .count()
            })
        };
        return Some(format!(
            "{} added, {} changed, {} destroyed",
            done("create"),
            done("update"),
            done("delete")
        ));
    }
    if let Some(plan) = r.get("plan") {
        let s = &plan["summary"];
        return Some(format!(
            "plan: {} to add, {} to change, {} to destroy",
            s["add"], s["change"], s["destroy"]
        ));
    }
    if let Some(drift) = r.get("drift") {
        return Some(format!(
            "drift: {}{}",
            if drift["has_drift"] == true {
                "drifted"
            } else {
                "clean"
            },
            if r.get("written") == Some(&serde_json::Value::Bool(true)) {
                " (recorded in state)"
            } else {
                ""
            }
        ));
    }
    None
}

/// One event, as `runs show --follow` prints it.
pub fn event_line(e: &RunEvent) -> String {
    let at = e.at.format("%H:%M:%S%.3f");
    let text = |k: &str| e.detail[k].as_str().unwrap_or_default().to_owned();
    let what = match e.kind {
        EventKind::Status => {
            let mut s = match e.detail["from"].as_str() {
                Some(from) => format!("{from} -> {}", text("to")),
                None => text("to"),
            };
            for (key, label) in [("worker", "worker"), ("by", "by")] {
                if let Some(v) = e.detail[key].as_str() {
                    let _ = write!(s, " ({label} {v})");
                }
            }
            if e.detail["takeover"] == true {
                s.push_str(" [takeover]");
            }
            if let Some(err) = e.detail["error"].as_str() {
                let _ = write!(s, ": {err}");
            }
            format!("status {s}")
        }
        EventKind::Started => format!(
            "{}: {}...",
            e.address.as_deref().unwrap_or("?"),
            text("step")
        ),
        EventKind::Finished => format!(
            "{}: {} complete after {:.2}s",
            e.address.as_deref().unwrap_or("?"),
            text("step"),
            e.detail["elapsed_ms"].as_u64().unwrap_or(0) as f64 / 1000.0
        ),
        EventKind::Failed => format!(
            "{}: {} failed: {}",
            e.address.as_deref().unwrap_or("?"),
            text("step"),
            text("error")
        ),
        EventKind::RollingBack => format!(
            "{}: rolling back {} resource(s) created by this run",
            text("tenant"),
            e.detail["resources"]
        ),
        EventKind::RolledBack => format!("{}: rolled back completely", text("tenant")),
        EventKind::Message => text("message"),
    };
    format!("[{at}] #{} attempt {}: {what}", e.id, e.attempt)
}
