//! Requests and validation results for people (terminal text); JSON is the serde form
//! of [`super::RequestView`] and [`super::checks::CheckResult`].

use std::fmt::Write;

use super::RequestView;
use super::registry::{CheckRecord, Request};

fn inr(amount: i64) -> String {
    crate::plan::cost::inr(amount as f64)
}

/// The checks as an aligned table.
pub fn checks_table(checks: &[CheckRecord]) -> String {
    let mut out = String::new();
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in checks {
        let _ = writeln!(
            out,
            "    {} {:width$}  {:11}  {:>6} ms  {}",
            if c.passed { "PASS" } else { "FAIL" },
            c.name,
            c.category,
            c.duration_ms,
            c.message
        );
    }
    out
}

/// One line per request.
pub fn request_line(r: &Request) -> String {
    format!(
        "{:24} {:18} {:6} {:12} {:>14}  {}",
        r.id,
        r.status.as_str(),
        r.tier,
        r.region,
        inr(r.budget_inr),
        r.name
    )
}

/// A request with its approvals, checks and audit trail.
pub fn request_view(v: &RequestView) -> String {
    let r = &v.request;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Request {}: {} ({} tier, {}, {}/month, {} data)",
        r.id,
        r.name,
        r.tier,
        r.region,
        inr(r.budget_inr),
        r.data_classification
    );
    let _ = writeln!(out, "  status:    {}", r.status);
    if let (Some(step), Some(reason)) = (&r.failure_step, &r.failure_reason) {
        let _ = writeln!(out, "  failed at: {step}: {reason}");
    }
    let _ = writeln!(
        out,
        "  requester: {}   owner: {}",
        r.requester, r.owner_email
    );
    if r.required_approvals.is_empty() {
        let _ = writeln!(out, "  approvals: none required");
    } else {
        let _ = writeln!(out, "  approvals:");
        for a in &r.required_approvals {
            let decision = v.decisions.iter().find(|d| d.role == a.role);
            let state = match decision {
                Some(d) => format!(
                    "{} by {}{}",
                    d.decision,
                    d.decided_by,
                    d.note
                        .as_ref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default()
                ),
                None => "pending".into(),
            };
            let _ = writeln!(
                out,
                "    {:10} {state:40} because {}",
                a.role,
                a.reasons.join("; ")
            );
        }
    }
    if !v.checks.is_empty() {
        let passed = v.checks.iter().filter(|c| c.passed).count();
        let _ = writeln!(
            out,
            "  validation: {passed} of {} checks passed",
            v.checks.len()
        );
        out.push_str(&checks_table(&v.checks));
    }
    let _ = writeln!(out, "  audit trail:");
    for e in &v.audit {
        let what = match (&e.from_status, &e.to_status) {
            (Some(f), Some(t)) => format!("{f} -> {t}"),
            (None, Some(t)) => format!("{} -> {t}", e.action),
            _ => e.action.clone(),
        };
        let detail = match e.detail.as_object() {
            Some(o) if o.is_empty() => String::new(),
            Some(o) => o
                .iter()
                .filter(|(k, _)| *k != "deliveries")
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            None => e.detail.to_string(),
        };
        let _ = writeln!(
            out,
            "    {} {:16} {:30} {detail}",
            e.at.format("%Y-%m-%d %H:%M:%S%.3f"),
            e.actor,
            what
        );
    }
    out
}
