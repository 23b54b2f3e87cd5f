//! A bounded load on one `tenantform serve`: scenario 7 of `scripts/bench`
//! (`scripts/bench api-load` runs it alone, with the server, two workers and the
//! clean-up around it).
//!
//! ```text
//! api_load --base http://127.0.0.1:8080 --token JWT [--pollers 200] [--submitters 20]
//!          [--seconds 30] [--prefix load-abcde] [--think-ms 0]
//! ```
//!
//! For `--seconds`, `--pollers` clients poll in turn `GET /v1/runs/{id}` (a run one of
//! the submitters queued, once there is one) and `GET /v1/tenants`, and `--submitters`
//! clients submit `POST /v1/requests`, each a Bronze request that needs no approval,
//! under a tenant id of its own (`PREFIX-CLIENT-N`), whose provisioning run the workers
//! execute. Each client waits for its answer before it sends the next request (closed
//! loop), after `--think-ms`. Then it prints one JSON line: requests done, requests per
//! second, errors by status (`transport` when no answer came), the requests still
//! unanswered at the deadline (not counted otherwise), and per endpoint group the count
//! and the p50/p95/p99/max latency in milliseconds.
//!
//! Every request has a 30 s timeout and the load stops at its deadline whatever is in
//! flight, so the program ends within `--seconds` + 30 s. It measures; it asserts
//! nothing (its exit status is 0 whatever the answers were, 2 on bad arguments).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The endpoint groups reported.
const RUN: &str = "GET /v1/runs/{id}";
const TENANTS: &str = "GET /v1/tenants";
const SUBMIT: &str = "POST /v1/requests";

struct Options {
    base: String,
    token: String,
    pollers: usize,
    submitters: usize,
    seconds: u64,
    prefix: String,
    think: Duration,
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "api_load: {problem}\nusage: api_load --base URL --token JWT [--pollers 200] [--submitters 20] [--seconds 30] [--prefix load] [--think-ms 0]"
    );
    std::process::exit(2)
}

fn options() -> Options {
    let mut o = Options {
        base: String::new(),
        token: String::new(),
        pollers: 200,
        submitters: 20,
        seconds: 30,
        prefix: "load".into(),
        think: Duration::ZERO,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let number = || {
            value
                .parse::<u64>()
                .unwrap_or_else(|_| usage(&format!("{flag}: {value:?} is not a number")))
        };
        match flag.as_str() {
            "--base" => o.base = value.trim_end_matches('/').to_owned(),
            "--token" => o.token = value.clone(),
            "--pollers" => o.pollers = number() as usize,
            "--submitters" => o.submitters = number() as usize,
            "--seconds" => o.seconds = number(),
            "--prefix" => o.prefix = value.clone(),
            "--think-ms" => o.think = Duration::from_millis(number()),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if o.base.is_empty() || o.token.is_empty() {
        usage("--base and --token are required");
    }
    o
}

/// What one client saw: latencies (µs) and statuses per group.
#[derive(Default)]
struct Tally {
    latencies: BTreeMap<&'static str, Vec<u64>>,
    /// (group, status or "transport") -> count, of the answers that were not the
    /// group's success.
    errors: BTreeMap<(&'static str, String), u64>,
    done: u64,
    /// Requests still unanswered at the deadline: not counted above.
    cut: u64,
    /// Per error status, the message of the first such answer: what went wrong.
    samples: BTreeMap<String, String>,
}

impl Tally {
    fn record(
        &mut self,
        group: &'static str,
        took: Duration,
        outcome: Result<u16, ()>,
        answer: Option<&Value>,
    ) {
        self.done += 1;
        self.latencies
            .entry(group)
            .or_default()
            .push(took.as_micros() as u64);
        let ok = match (group, outcome) {
            (SUBMIT, Ok(s)) => s == 201 || s == 200,
            (_, Ok(s)) => s == 200,
            (_, Err(())) => false,
        };
        if !ok {
            let status = outcome.map_or("transport".to_owned(), |s| s.to_string());
            let message = answer
                .and_then(|a| a["error"]["message"].as_str())
                .unwrap_or("(no error message)");
            self.samples
                .entry(status.clone())
                .or_insert_with(|| message.chars().take(300).collect());
            *self.errors.entry((group, status)).or_default() += 1;
        }
    }

    fn merge(&mut self, other: Tally) {
        self.done += other.done;
        self.cut += other.cut;
        for (g, mut l) in other.latencies {
            self.latencies.entry(g).or_default().append(&mut l);
        }
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
        for (status, message) in other.samples {
            self.samples.entry(status).or_insert(message);
        }
    }
}

/// Nearest-rank percentile of sorted `values`, in milliseconds.
fn percentile_ms(sorted: &[u64], p: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (sorted.len() * p).div_ceil(100).clamp(1, sorted.len());
    (sorted[rank - 1] as f64 / 100.0).round() / 10.0
}

/// Sends one request; its status, or `Err` when no answer came (or past the deadline).
async fn send(
    request: reqwest::RequestBuilder,
    deadline: Instant,
) -> (Result<u16, ()>, Option<Value>) {
    let left = deadline.saturating_duration_since(Instant::now());
    let answer = tokio::time::timeout(left, async {
        let r = request.send().await.map_err(|_| ())?;
        let status = r.status().as_u16();
        let body = r.json::<Value>().await.ok();
        Ok::<_, ()>((status, body))
    })
    .await;
    match answer {
        Ok(Ok((status, body))) => (Ok(status), body),
        _ => (Err(()), None),
    }
}

#[tokio::main]
async fn main() {
    let o = options();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(o.pollers + o.submitters)
        .build()
        .expect("an HTTP client");
    let auth = format!("Bearer {}", o.token);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(o.seconds);
    // The runs the submitters' requests queued, for the pollers.
    let runs: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut tasks = Vec::new();

    for client in 0..o.submitters {
        let (http, auth, base, prefix, runs) = (
            http.clone(),
            auth.clone(),
            o.base.clone(),
            o.prefix.clone(),
            runs.clone(),
        );
        let think = o.think;
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let id = format!("{prefix}-{client:02}-{n:04}");
                n += 1;
                let body = json!({
                    "id": id, "name": format!("Load {id}"), "tier": "bronze",
                    "region": "ap-south-1", "budget_inr": 200_000,
                    "owner_email": format!("owner@{id}.example"), "cost_center": "CC-LOAD",
                    "data_classification": "internal", "protected": false,
                });
                let t0 = Instant::now();
                let request = http
                    .post(format!("{base}/v1/requests"))
                    .header("authorization", &auth)
                    .json(&body);
                let (status, answer) = send(request, deadline).await;
                if Instant::now() >= deadline && status.is_err() {
                    tally.cut += 1; // cut off by the deadline, not an answer
                    break;
                }
                tally.record(SUBMIT, t0.elapsed(), status, answer.as_ref());
                if let Some(run) = answer.as_ref().and_then(|a| a["run"]["id"].as_str()) {
                    runs.lock().expect("not poisoned").push(run.to_owned());
                }
                tokio::time::sleep(think).await;
            }
            tally
        }));
    }

    for client in 0..o.pollers {
        let (http, auth, base, runs) = (http.clone(), auth.clone(), o.base.clone(), runs.clone());
        let think = o.think;
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut turn = client;
            while Instant::now() < deadline {
                turn += 1;
                let run = if turn % 2 == 0 {
                    let runs = runs.lock().expect("not poisoned");
                    (!runs.is_empty()).then(|| runs[fastrand::usize(..runs.len())].clone())
                } else {
                    None
                };
                let (group, url) = match run {
                    Some(id) => (RUN, format!("{base}/v1/runs/{id}")),
                    None => (TENANTS, format!("{base}/v1/tenants")),
                };
                let t0 = Instant::now();
                let (status, answer) =
                    send(http.get(url).header("authorization", &auth), deadline).await;
                if Instant::now() >= deadline && status.is_err() {
                    tally.cut += 1;
                    break;
                }
                tally.record(group, t0.elapsed(), status, answer.as_ref());
                tokio::time::sleep(think).await;
            }
            tally
        }));
    }

    let mut all = Tally::default();
    for t in tasks {
        if let Ok(tally) = t.await {
            all.merge(tally);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut groups = serde_json::Map::new();
    for (group, latencies) in &mut all.latencies {
        latencies.sort_unstable();
        let errors: u64 = all
            .errors
            .iter()
            .filter(|((g, _), _)| g == group)
            .map(|(_, n)| n)
            .sum();
        groups.insert(
            (*group).to_owned(),
            json!({
                "requests": latencies.len(),
                "errors": errors,
                "per_s": ((latencies.len() as f64 / elapsed) * 10.0).round() / 10.0,
                "p50_ms": percentile_ms(latencies, 50),
                "p95_ms": percentile_ms(latencies, 95),
                "p99_ms": percentile_ms(latencies, 99),
                "max_ms": percentile_ms(latencies, 100),
            }),
        );
    }
    let mut errors_by_status: BTreeMap<String, u64> = BTreeMap::new();
    for ((_, status), n) in &all.errors {
        *errors_by_status.entry(status.clone()).or_default() += n;
    }
    let errors: u64 = errors_by_status.values().sum();
    let report = json!({
        "scenario": "api-load",
        "pollers": o.pollers,
        "submitters": o.submitters,
        "seconds": o.seconds,
        "think_ms": o.think.as_millis() as u64,
        "elapsed_s": (elapsed * 100.0).round() / 100.0,
        "requests": all.done,
        "requests_per_s": ((all.done as f64 / elapsed) * 10.0).round() / 10.0,
        "errors": errors,
        "errors_by_status": errors_by_status,
        "error_samples": all.samples,
        "unanswered_at_deadline": all.cut,
        "runs_queued": runs.lock().expect("not poisoned").len(),
        "groups": groups,
    });
    println!("{report}");
}
