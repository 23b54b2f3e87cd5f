//! The portal's pages as HTML: semantic elements, a label on every input, a visible
//! focus ring, and no script but the request page's live update. Every value from a
//! request, token or spec is escaped with [`esc`]; the pages render the JSON the API
//! answers (the same functions make it), so the portal shows what the API shows.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde_json::Value;

use super::session::Session;
use crate::spec::PlatformSpec;
use crate::workflow::status::RequestStatus;

/// `s` safe inside HTML text and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as text: strings bare, null as a dash.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => esc(s),
        Value::Null => "—".into(),
        other => esc(&other.to_string()),
    }
}

const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; margin: 0; color: #1d1d1d; line-height: 1.45; }
header, main, footer { padding: 0 1.5rem; }
header { background: #0b3d6b; color: #fff; display: flex; gap: 1.5rem; align-items: center; flex-wrap: wrap; }
header a { color: #fff; }
header button { color: #fff; background: transparent; border: 1px solid #fff; margin: 0; }
nav ul { list-style: none; display: flex; gap: 1rem; padding: 0; }
main { max-width: 60rem; }
a { color: #0b57a4; }
:focus-visible { outline: 3px solid #f5a623; outline-offset: 2px; }
label { display: block; font-weight: 600; margin-top: 0.8rem; }
input, select, textarea { font: inherit; padding: 0.3rem; min-width: 18rem; }
input[type=checkbox] { min-width: 0; }
button { font: inherit; padding: 0.35rem 0.9rem; margin-top: 0.8rem; cursor: pointer; }
.field-error { color: #a40000; margin: 0.2rem 0; }
[aria-invalid=true] { border: 2px solid #a40000; }
.hint { color: #4a4a4a; font-size: 0.9rem; margin: 0.1rem 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #c8c8c8; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
.status { font-weight: 700; }
.passed { color: #17632a; } .failed { color: #a40000; }
.inline { display: inline; }
"#;

/// The page around `body`, with the navigation of `session`'s caller.
pub fn layout(title: &str, session: Option<&Session>, body: &str) -> Html<String> {
    let mut nav = String::new();
    if let Some(s) = session {
        let _ = write!(
            nav,
            r#"<nav aria-label="Main"><ul>
<li><a href="/requests">Requests</a></li>
<li><a href="/requests/new">New request</a></li>
<li><a href="/inbox">Approvals inbox</a></li>
</ul></nav>
<p>Signed in as <strong id="signed-in-as">{who}</strong> ({roles})</p>
<form method="post" action="/sign-out" class="inline">
<input type="hidden" name="csrf" value="{csrf}">
<button type="submit">Sign out</button>
</form>"#,
            who = esc(&s.caller.subject),
            roles = esc(&s
                .caller
                .roles
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")),
            csrf = esc(&s.csrf),
        );
    }
    Html(format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · tenantform</title>
<style>{STYLE}</style>
</head>
<body>
<header><p><strong>tenantform</strong> portal</p>{nav}</header>
<main id="main">
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"#,
        title = esc(title),
    ))
}

/// An error page with `status` and `message`.
pub fn error_page(status: StatusCode, session: Option<&Session>, message: &str) -> Response {
    let body = format!(
        r#"<p role="alert" id="error-message">{}</p><p><a href="/requests">Back to the requests</a></p>"#,
        esc(message)
    );
    let title = status.canonical_reason().unwrap_or("Error");
    (status, layout(title, session, &body)).into_response()
}

/// The sign-in page: a token field, the double-submit value, and why it failed.
pub fn sign_in(nonce: &str, problem: Option<&str>) -> Html<String> {
    let problem = problem
        .map(|p| {
            format!(
                r#"<p role="alert" class="field-error" id="token-error">{}</p>"#,
                esc(p)
            )
        })
        .unwrap_or_default();
    let described = if problem.is_empty() {
        r#"aria-describedby="token-hint""#
    } else {
        r#"aria-describedby="token-hint token-error" aria-invalid="true""#
    };
    layout(
        "Sign in",
        None,
        &format!(
            r#"<form method="post" action="/sign-in">
<input type="hidden" name="csrf" value="{nonce}">
<label for="token">API token</label>
<p class="hint" id="token-hint">The token <code>tenantform token create</code> made for you.</p>
<textarea id="token" name="token" rows="4" cols="60" required {described}></textarea>
{problem}
<div><button type="submit" id="sign-in">Sign in</button></div>
</form>"#,
            nonce = esc(nonce),
        ),
    )
}

/// The requests the caller sees.
pub fn requests(session: &Session, list: &[Value]) -> Html<String> {
    let mut rows = String::new();
    for r in list {
        let id = r["id"].as_str().unwrap_or_default();
        let _ = writeln!(
            rows,
            r#"<tr><td><a href="/requests/{href}">{id}</a></td><td>{name}</td><td>{tier}</td><td>{region}</td><td class="status">{status}</td><td>{requester}</td></tr>"#,
            href = esc(id),
            id = esc(id),
            name = text(&r["name"]),
            tier = text(&r["tier"]),
            region = text(&r["region"]),
            status = text(&r["status"]),
            requester = text(&r["requester"]),
        );
    }
    let table = if list.is_empty() {
        "<p>No requests yet.</p>".to_owned()
    } else {
        format!(
            r#"<table id="requests"><caption>Tenant requests</caption>
<thead><tr><th scope="col">Id</th><th scope="col">Name</th><th scope="col">Tier</th><th scope="col">Region</th><th scope="col">Status</th><th scope="col">Requester</th></tr></thead>
<tbody>{rows}</tbody></table>"#
        )
    };
    layout(
        "Requests",
        Some(session),
        &format!(r#"<p><a href="/requests/new">Request a tenant</a></p>{table}"#),
    )
}

/// One problem of a submitted form, as the API lists it.
#[derive(Clone, Debug, Default)]
pub struct FieldProblem {
    pub field: Option<String>,
    pub message: String,
    pub fix: Option<String>,
}

/// The fields of the request form, in order: name, label, hint.
const FIELDS: &[(&str, &str, &str)] = &[
    (
        "id",
        "Tenant id",
        "Lower-case letters, digits and dashes; it names every resource of the tenant.",
    ),
    ("name", "Display name", ""),
    ("tier", "Tier", "See the tier catalog below."),
    (
        "region",
        "Region",
        "Where the tenant's data lives; see the residency rules below.",
    ),
    (
        "budget_inr",
        "Monthly budget (INR)",
        "Within the tier's range.",
    ),
    ("owner_email", "Owner e-mail", ""),
    ("cost_center", "Cost center", ""),
    (
        "data_classification",
        "Data classification",
        "Sensitive classifications need more approvals.",
    ),
    (
        "protected",
        "Protected (refuse destroy)",
        "A protected tenant cannot be destroyed until this is turned off.",
    ),
    (
        "notes",
        "Notes for the approvers",
        "Optional: why the tenant is needed.",
    ),
];

/// The new-request form, filled with `values`, each problem next to its field.
pub fn request_form(
    session: &Session,
    platform: &PlatformSpec,
    values: &BTreeMap<String, String>,
    problems: &[FieldProblem],
) -> Html<String> {
    let known = |f: &Option<String>| {
        f.as_deref()
            .is_some_and(|f| FIELDS.iter().any(|(n, _, _)| *n == f))
    };
    let mut summary = String::new();
    if !problems.is_empty() {
        summary.push_str(r#"<section role="alert" aria-labelledby="problems-title" id="problems"><h2 id="problems-title">The request was not recorded</h2><ul>"#);
        for p in problems {
            let _ = write!(
                summary,
                "<li>{}{}{}</li>",
                p.field
                    .as_deref()
                    .filter(|_| known(&p.field))
                    .map(|f| format!(r##"<a href="#{f}">{f}</a>: "##, f = esc(f)))
                    .unwrap_or_else(|| p
                        .field
                        .as_deref()
                        .map(|f| format!("{}: ", esc(f)))
                        .unwrap_or_default()),
                esc(&p.message),
                p.fix
                    .as_deref()
                    .map(|f| format!(" — {}", esc(f)))
                    .unwrap_or_default(),
            );
        }
        summary.push_str("</ul></section>");
    }
    let value = |name: &str| values.get(name).map(String::as_str).unwrap_or_default();
    let mut fields = String::new();
    for (name, label, hint) in FIELDS {
        let errors: Vec<&FieldProblem> = problems
            .iter()
            .filter(|p| p.field.as_deref() == Some(*name))
            .collect();
        let mut described = Vec::new();
        if !hint.is_empty() {
            described.push(format!("{name}-hint"));
        }
        if !errors.is_empty() {
            described.push(format!("{name}-error"));
        }
        let mut attrs = String::new();
        if !described.is_empty() {
            let _ = write!(attrs, r#" aria-describedby="{}""#, described.join(" "));
        }
        if !errors.is_empty() {
            attrs.push_str(r#" aria-invalid="true""#);
        }
        let control = match *name {
            "tier" => select(
                name,
                &attrs,
                value(name),
                platform
                    .tiers
                    .iter()
                    .map(|(k, t)| (k.clone(), format!("{} ({k})", t.display_name))),
            ),
            "region" => select(
                name,
                &attrs,
                value(name),
                platform
                    .regions
                    .iter()
                    .map(|(k, r)| (k.clone(), format!("{k} ({})", r.jurisdiction))),
            ),
            "data_classification" => select(
                name,
                &attrs,
                value(name),
                platform
                    .data_classifications
                    .keys()
                    .map(|k| (k.clone(), k.clone())),
            ),
            "budget_inr" => format!(
                r#"<input type="number" inputmode="numeric" id="{name}" name="{name}" value="{v}" required{attrs}>"#,
                v = esc(value(name))
            ),
            "owner_email" => format!(
                r#"<input type="email" id="{name}" name="{name}" value="{v}" required autocomplete="email"{attrs}>"#,
                v = esc(value(name))
            ),
            "protected" => format!(
                r#"<input type="checkbox" id="{name}" name="{name}" value="true"{checked}{attrs}>"#,
                checked = if value(name) == "true" {
                    " checked"
                } else {
                    ""
                }
            ),
            "notes" => format!(
                r#"<textarea id="{name}" name="{name}" rows="3" cols="60"{attrs}>{v}</textarea>"#,
                v = esc(value(name))
            ),
            _ => format!(
                r#"<input type="text" id="{name}" name="{name}" value="{v}" required{attrs}>"#,
                v = esc(value(name))
            ),
        };
        let hint = if hint.is_empty() {
            String::new()
        } else {
            format!(r#"<p class="hint" id="{name}-hint">{}</p>"#, esc(hint))
        };
        let error = if errors.is_empty() {
            String::new()
        } else {
            let lines: Vec<String> = errors
                .iter()
                .map(|p| match &p.fix {
                    Some(fix) => format!("{} — {}", esc(&p.message), esc(fix)),
                    None => esc(&p.message),
                })
                .collect();
            format!(
                r#"<p class="field-error" id="{name}-error" data-field="{name}">{}</p>"#,
                lines.join("<br>")
            )
        };
        let _ = write!(
            fields,
            r#"<div class="field" id="field-{name}"><label for="{name}">{label}</label>{hint}{control}{error}</div>"#,
            label = esc(label),
        );
    }
    let body = format!(
        r#"{summary}
<form method="post" action="/requests/new" novalidate>
<input type="hidden" name="csrf" value="{csrf}">
{fields}
<div><button type="submit" id="submit-request">Submit the request</button></div>
</form>
{catalog}"#,
        csrf = esc(&session.csrf),
        catalog = catalog(platform),
    );
    layout("Request a tenant", Some(session), &body)
}

fn select(
    name: &str,
    attrs: &str,
    current: &str,
    options: impl Iterator<Item = (String, String)>,
) -> String {
    let mut out = format!(
        r#"<select id="{name}" name="{name}" required{attrs}><option value="">Choose…</option>"#
    );
    for (value, label) in options {
        let selected = if value == current { " selected" } else { "" };
        let _ = write!(
            out,
            r#"<option value="{v}"{selected}>{l}</option>"#,
            v = esc(&value),
            l = esc(&label)
        );
    }
    out.push_str("</select>");
    out
}

fn lakh(inr: i64) -> String {
    format!("₹{:.1} lakh", inr as f64 / 100_000.0)
}

/// The tier catalog, the residency rules and the approval rules of the platform file.
fn catalog(platform: &PlatformSpec) -> String {
    let mut tiers = String::new();
    for (k, t) in &platform.tiers {
        let monthly: f64 = t.monthly_cost_inr.values().sum();
        let _ = writeln!(
            tiers,
            "<tr><th scope=\"row\">{name} ({k})</th><td>{min} – {max}</td><td>{sla} ms</td><td>{qpm}/min</td><td>{cache}</td><td>{cost}</td></tr>",
            name = esc(&t.display_name),
            k = esc(k),
            min = lakh(t.budget_min_inr),
            max = lakh(t.budget_max_inr),
            sla = t.sla_latency_ms,
            qpm = t.rate_limits.queries_per_minute,
            cache = if t.dedicated_cache {
                "dedicated"
            } else {
                "shared"
            },
            cost = lakh(monthly.round() as i64),
        );
    }
    let mut classes = String::new();
    for (k, c) in &platform.data_classifications {
        let _ = writeln!(
            classes,
            "<tr><th scope=\"row\">{k}</th><td>{j}</td><td>{s}</td><td>{rule}</td></tr>",
            k = esc(k),
            j = esc(&c.allowed_jurisdictions.join(", ")),
            s = if c.sensitive { "yes" } else { "no" },
            rule = esc(&c.rule),
        );
    }
    let mut regions = String::new();
    for (k, r) in &platform.regions {
        let _ = writeln!(
            regions,
            "<tr><th scope=\"row\">{k}</th><td>{j}</td><td>×{m}</td></tr>",
            k = esc(k),
            j = esc(&r.jurisdiction),
            m = r.cost_multiplier,
        );
    }
    let a = &platform.approval;
    let mut rules = format!(
        "<li>Below {auto}: approved automatically.</li><li>{auto} to {limit}: {up}.</li><li>Above {limit}: {above}.</li><li>Sensitive data: {sens}.</li>",
        auto = lakh(a.auto_approve_below_inr),
        limit = lakh(a.limit_inr),
        up = esc(&a.approvers_up_to_limit.join(", ")),
        above = esc(&a.approvers_above_limit.join(", ")),
        sens = esc(&a.sensitive_data.join(", ")),
    );
    if let Some(home) = &a.home_jurisdiction {
        let _ = write!(
            rules,
            "<li>A region outside jurisdiction {}: {}.</li>",
            esc(home),
            esc(&a.cross_border.join(", "))
        );
    }
    for (tier, roles) in &a.tiers {
        let _ = write!(
            rules,
            "<li>Tier {}: {}.</li>",
            esc(tier),
            esc(&roles.join(", "))
        );
    }
    format!(
        r#"<section aria-labelledby="tiers-title" id="tier-catalog"><h2 id="tiers-title">Tier catalog</h2>
<table><thead><tr><th scope="col">Tier</th><th scope="col">Monthly budget</th><th scope="col">Latency p95</th><th scope="col">Queries</th><th scope="col">Cache</th><th scope="col">Estimated cost (us-east-1)</th></tr></thead><tbody>{tiers}</tbody></table></section>
<section aria-labelledby="residency-title" id="residency-rules"><h2 id="residency-title">Data residency</h2>
<table><thead><tr><th scope="col">Classification</th><th scope="col">Allowed jurisdictions</th><th scope="col">Sensitive</th><th scope="col">Rule</th></tr></thead><tbody>{classes}</tbody></table>
<table><thead><tr><th scope="col">Region</th><th scope="col">Jurisdiction</th><th scope="col">Cost</th></tr></thead><tbody>{regions}</tbody></table></section>
<section aria-labelledby="approval-title"><h2 id="approval-title">Who approves</h2><ul>{rules}</ul></section>"#
    )
}

/// The required approvals of request `r` with their reasons and decisions.
fn approvals(r: &Value) -> String {
    let mut out = String::new();
    let pending: Vec<&str> = r["pending_approvals"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let empty = Vec::new();
    let decisions = r["decisions"].as_array().unwrap_or(&empty);
    for a in r["required_approvals"].as_array().unwrap_or(&empty) {
        let role = a["role"].as_str().unwrap_or_default();
        let reasons: Vec<String> = a["reasons"]
            .as_array()
            .map(|v| v.iter().map(text).collect())
            .unwrap_or_default();
        let decision = decisions
            .iter()
            .rev()
            .find(|d| d["role"] == role)
            .map(|d| {
                format!(
                    "{} by {} {}",
                    text(&d["decision"]),
                    text(&d["decided_by"]),
                    d["note"]
                        .as_str()
                        .map(|n| format!("(“{}”)", esc(n)))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_else(|| {
                if pending.contains(&role) {
                    "waiting".into()
                } else {
                    "—".into()
                }
            });
        let _ = writeln!(
            out,
            r#"<tr data-role="{r}"><th scope="row">{r}</th><td>{reasons}</td><td class="decision">{decision}</td></tr>"#,
            r = esc(role),
            reasons = reasons.join("; "),
        );
    }
    if out.is_empty() {
        return "<p>No approval needed.</p>".into();
    }
    format!(
        r#"<table id="approvals"><thead><tr><th scope="col">Role</th><th scope="col">Why it is required</th><th scope="col">Decision</th></tr></thead><tbody>{out}</tbody></table>"#
    )
}

fn checks(r: &Value) -> String {
    let empty = Vec::new();
    let list = r["checks"].as_array().unwrap_or(&empty);
    if list.is_empty() {
        return "<p>No validation has run yet.</p>".into();
    }
    let mut rows = String::new();
    for c in list {
        let passed = c["passed"].as_bool().unwrap_or(false);
        let _ = writeln!(
            rows,
            r#"<tr><th scope="row">{}</th><td>{}</td><td class="{cls}">{verdict}</td><td>{}</td></tr>"#,
            text(&c["name"]),
            text(&c["category"]),
            text(&c["message"]),
            cls = if passed { "passed" } else { "failed" },
            verdict = if passed { "passed" } else { "failed" },
        );
    }
    format!(
        r#"<table id="checks"><thead><tr><th scope="col">Check</th><th scope="col">Category</th><th scope="col">Result</th><th scope="col">Message</th></tr></thead><tbody>{rows}</tbody></table>"#
    )
}

fn audit(r: &Value) -> String {
    let empty = Vec::new();
    let mut rows = String::new();
    for e in r["audit"].as_array().unwrap_or(&empty) {
        let change = match (e["from_status"].as_str(), e["to_status"].as_str()) {
            (Some(f), Some(t)) => format!("{} → {}", esc(f), esc(t)),
            (None, Some(t)) => esc(t),
            _ => String::new(),
        };
        let _ = writeln!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{change}</td></tr>",
            text(&e["at"]),
            text(&e["actor"]),
            text(&e["action"]),
        );
    }
    format!(
        r#"<table id="audit"><thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">What</th><th scope="col">Status</th></tr></thead><tbody>{rows}</tbody></table>"#
    )
}

/// A request's page; it follows the request's event stream at `events_url` and reloads
/// on each new event, until the request settles.
pub fn request(session: &Session, r: &Value, events_url: &str) -> Html<String> {
    let id = r["id"].as_str().unwrap_or_default();
    let status = r["status"].as_str().unwrap_or_default();
    let failure = match (r["failure_step"].as_str(), r["failure_reason"].as_str()) {
        (Some(step), Some(why)) => format!(
            r#"<p role="alert">Failed at {}: {}</p>"#,
            esc(step),
            esc(why)
        ),
        _ => String::new(),
    };
    // Where the request's event stream ends, the page stops following.
    let settled = status
        .parse::<RequestStatus>()
        .is_ok_and(super::super::events::request_stream_ends);
    // The run records its own end just after the request's: once the request settled,
    // the page (which no longer follows) names the run without a status that may lag.
    let run = match (r["run"].is_object(), settled) {
        (true, false) => format!(
            "<p>Provisioning run <code>{}</code>: <span id=\"run-status\">{}</span></p>",
            text(&r["run"]["id"]),
            text(&r["run"]["status"])
        ),
        (true, true) => format!(
            "<p>Provisioning run <code>{}</code>.</p>",
            text(&r["run"]["id"])
        ),
        (false, _) => String::new(),
    };
    let live_note = if settled {
        ""
    } else {
        r#"<p id="live-note" class="hint">This page follows the request and reloads when it moves.</p>"#
    };
    let tenant_link = if matches!(
        status,
        "active" | "validating" | "provisioning" | "failed" | "rolled_back"
    ) {
        format!(
            r#"<p><a href="/tenants/{i}">Tenant page of {i}</a></p>"#,
            i = esc(id)
        )
    } else {
        String::new()
    };
    let body = format!(
        r#"<p>Status: <span class="status" id="status" aria-live="polite" data-status="{status_attr}" data-last-event="{last_event}">{status_text}</span></p>
{live_note}
{failure}{run}{tenant_link}
<dl>
<dt>Name</dt><dd>{name}</dd><dt>Tier</dt><dd id="tier">{tier}</dd><dt>Region</dt><dd>{region}</dd>
<dt>Monthly budget</dt><dd>₹{budget}</dd><dt>Data classification</dt><dd>{class}</dd>
<dt>Requester</dt><dd>{requester}</dd><dt>Notes</dt><dd>{notes}</dd>
</dl>
<h2>Approvals</h2>{approvals}
<h2>Validation checks</h2>{checks}
<h2>Audit trail</h2>{audit}
<script>
(function () {{
  var el = document.getElementById("status");
  if ({settled} || !window.EventSource) return;
  // The stream replays the trail from its start: entries past the rendered ones are news.
  var shown = Number(el.dataset.lastEvent);
  var source = new EventSource({events});
  function news(e) {{
    if (Number(e.lastEventId) <= shown) return;
    source.close();
    location.reload();
  }}
  ["submitted", "approval", "rejection", "status", "configured", "notification",
   "revalidated", "exported"].forEach(function (kind) {{
    source.addEventListener(kind, news);
  }});
}})();
</script>"#,
        status_attr = esc(status),
        settled = settled,
        last_event = r["audit"]
            .as_array()
            .and_then(|a| a.iter().filter_map(|e| e["seq"].as_i64()).max())
            .unwrap_or(0),
        status_text = esc(status),
        name = text(&r["name"]),
        tier = text(&r["tier"]),
        region = text(&r["region"]),
        budget = text(&r["budget_inr"]),
        class = text(&r["data_classification"]),
        requester = text(&r["requester"]),
        notes = text(&r["notes"]),
        approvals = approvals(r),
        checks = checks(r),
        audit = audit(r),
        events = serde_json::to_string(events_url).unwrap_or_else(|_| "\"\"".into()),
    );
    layout(&format!("Request {id}"), Some(session), &body)
}

/// The approver's inbox: every request waiting for one of the caller's roles, with a
/// decision form per role.
pub fn inbox(session: &Session, waiting: &[Value]) -> Html<String> {
    let mut out = String::new();
    for r in waiting {
        let id = r["id"].as_str().unwrap_or_default();
        let mut forms = String::new();
        let empty = Vec::new();
        for role in r["pending_approvals"].as_array().unwrap_or(&empty) {
            let role = role.as_str().unwrap_or_default();
            if !session.caller.has_role(role) {
                continue;
            }
            let reasons: Vec<String> = r["required_approvals"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .filter(|a| a["role"] == role)
                .flat_map(|a| a["reasons"].as_array().cloned().unwrap_or_default())
                .map(|v| text(&v))
                .collect();
            let _ = write!(
                forms,
                r#"<form method="post" action="/requests/{href}/decision" data-role="{role}">
<input type="hidden" name="csrf" value="{csrf}">
<input type="hidden" name="role" value="{role}">
<p>As <strong>{role}</strong>, because: <span class="reason">{reasons}</span></p>
<label for="note-{fid}">Note ({role})</label>
<textarea id="note-{fid}" name="note" rows="2" cols="50"></textarea>
<div><button type="submit" name="decision" value="approve" id="approve-{fid}">Approve as {role}</button>
<button type="submit" name="decision" value="reject" id="reject-{fid}">Reject as {role}</button></div>
</form>"#,
                href = esc(id),
                role = esc(role),
                csrf = esc(&session.csrf),
                fid = esc(&format!("{id}-{role}")),
                reasons = reasons.join("; "),
            );
        }
        let _ = write!(
            out,
            r#"<article aria-labelledby="req-{i}" id="inbox-{i}"><h2 id="req-{i}"><a href="/requests/{i}">{i}</a>: {name}</h2>
<p>{tier} in {region}, ₹{budget} a month, {class} data, requested by {requester}.</p>{forms}</article>"#,
            i = esc(id),
            name = text(&r["name"]),
            tier = text(&r["tier"]),
            region = text(&r["region"]),
            budget = text(&r["budget_inr"]),
            class = text(&r["data_classification"]),
            requester = text(&r["requester"]),
        );
    }
    if out.is_empty() {
        out = r#"<p id="inbox-empty">Nothing waits for your approval.</p>"#.into();
    }
    layout("Approvals inbox", Some(session), &out)
}

/// A tenant's page: its status, outputs (secrets redacted by the engine), its last
/// drift check, and its request's checks and audit trail.
pub fn tenant(
    session: &Session,
    t: &Value,
    request: Option<&Value>,
    drift: Option<&Value>,
) -> Html<String> {
    let id = t["id"].as_str().unwrap_or_default();
    let mut outputs = String::new();
    if let Some(map) = t["outputs"].as_object() {
        for (k, v) in map {
            let _ = writeln!(
                outputs,
                "<tr><th scope=\"row\">{}</th><td><code>{}</code></td></tr>",
                esc(k),
                text(v)
            );
        }
    }
    let outputs = if outputs.is_empty() {
        "<p>No outputs (the tenant is not applied yet).</p>".to_owned()
    } else {
        format!(
            r#"<table id="outputs"><thead><tr><th scope="col">Output</th><th scope="col">Value</th></tr></thead><tbody>{outputs}</tbody></table>"#
        )
    };
    let drift = match drift {
        Some(run) => format!(
            r#"<p id="drift">Last drift check: run <code>{}</code>, {} {}, {}.</p>"#,
            text(&run["id"]),
            text(&run["operation"]),
            text(&run["status"]),
            text(&run["updated_at"]),
        ),
        None => r#"<p id="drift">No drift check has run for this tenant.</p>"#.into(),
    };
    let (checks, audit) = match request {
        Some(r) => (checks(r), audit(r)),
        None => (
            "<p>The tenant has no request in the registry.</p>".into(),
            "<p>—</p>".into(),
        ),
    };
    let body = format!(
        r#"<p>Status: <span class="status" id="tenant-status">{status}</span></p>
<h2>Validation checks</h2>{checks}
<h2>Outputs</h2>{outputs}
<h2>Drift</h2>{drift}
<h2>Audit trail</h2>{audit}"#,
        status = text(&t["status"]),
    );
    layout(&format!("Tenant {id}"), Some(session), &body)
}
