//! What `apply` and `destroy` show while they run, in one of three views:
//!
//! - [`View::Lines`] (stdout is not a terminal, or colour is off): one line per step as
//!   it starts and ends, and, as Terraform does, `ADDR: Still creating... [10s
//!   elapsed]` every ten seconds of a step that is still running, so that a long step
//!   (an ElastiCache cluster can take many minutes) shows life instead of silence.
//! - [`View::Live`] (a terminal, colour on): the steps in flight as spinners with their
//!   elapsed time, each finished step's line printed above them.
//! - [`View::Json`] (`--json`): Terraform's machine-readable UI on stdout
//!   ([`super::machine`]), and the lines of [`View::Lines`] on stderr for a person
//!   watching.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use tenantform::Plan;
use tenantform::apply::{Progress, ProgressSink};
use tenantform::plan::graph::StepKind;
use tenantform::plan::identity::physical_id;
use tenantform::report::Style;
use tenantform::resource::ResourceAddress;

use super::machine;

/// How often a running step says it is still running.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Lines,
    Live,
    Json,
}

impl View {
    /// The view for the flags and the terminal: JSON when asked, the live view on a
    /// terminal with colour (`--color never` and `NO_COLOR` give plain lines), lines
    /// otherwise.
    pub fn choose(json: bool, style: Style) -> View {
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        if json {
            View::Json
        } else if style.color && !dumb && std::io::stdout().is_terminal() {
            View::Live
        } else {
            View::Lines
        }
    }
}

/// A step in flight: its kind, when it started, how many beats it has had, and its
/// spinner in the live view.
struct InFlight {
    kind: StepKind,
    started: Instant,
    beats: u32,
    bar: Option<ProgressBar>,
}

struct Shared {
    view: View,
    in_flight: Mutex<BTreeMap<ResourceAddress, InFlight>>,
    /// The physical id of each resource of the plan (a bucket's name), for
    /// `apply_complete`'s `id_value`.
    ids: Mutex<HashMap<ResourceAddress, String>>,
    live: Option<MultiProgress>,
}

impl Shared {
    /// A line for a person: stdout, stderr under `--json`, above the spinners live.
    fn say(&self, line: &str) {
        match (&self.view, &self.live) {
            (View::Live, Some(multi)) => {
                if multi.println(line).is_err() {
                    println!("{line}");
                }
            }
            (View::Json, _) => eprintln!("{line}"),
            _ => println!("{line}"),
        }
    }

    fn hook(
        &self,
        kind_of_message: &str,
        text: &str,
        address: &ResourceAddress,
        hook: serde_json::Value,
    ) {
        let mut hook = hook;
        hook["resource"] = machine::resource(address);
        machine::emit(machine::message(
            "info",
            text,
            kind_of_message,
            json!({ "hook": hook }),
        ));
    }

    fn on(&self, p: &Progress) {
        match p {
            Progress::Started { address, kind } => {
                let text = format!("{address}: {}...", words(*kind).started);
                let bar = self.live.as_ref().map(|multi| {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {msg} [{elapsed} elapsed]")
                            .expect("a valid template"),
                    );
                    bar.set_message(text.clone());
                    bar.enable_steady_tick(Duration::from_millis(200));
                    bar
                });
                self.in_flight.lock().expect("progress lock").insert(
                    address.clone(),
                    InFlight {
                        kind: *kind,
                        started: Instant::now(),
                        beats: 0,
                        bar,
                    },
                );
                match self.view {
                    View::Live => {}
                    View::Lines => self.say(&text),
                    View::Json => {
                        self.say(&text);
                        self.hook(
                            "apply_start",
                            &text,
                            address,
                            json!({"action": machine::hook_action(*kind)}),
                        );
                    }
                }
            }
            Progress::Finished {
                address,
                kind,
                elapsed,
            } => {
                self.end(address);
                let id = self.ids.lock().expect("progress lock").get(address).cloned();
                let text = format!(
                    "{address}: {} complete after {:.2}s",
                    words(*kind).finished,
                    elapsed.as_secs_f64()
                );
                self.say(&text);
                if self.view == View::Json {
                    let mut hook = json!({
                        "action": machine::hook_action(*kind),
                        "elapsed_seconds": elapsed.as_secs(),
                    });
                    let text = match &id {
                        Some(id) if *kind != StepKind::Delete => {
                            hook["id_key"] = json!("id");
                            hook["id_value"] = json!(id);
                            format!("{text} [id={id}]")
                        }
                        _ => text,
                    };
                    self.hook("apply_complete", &text, address, hook);
                }
            }
            Progress::Failed {
                address,
                kind,
                error,
            } => {
                let started = self.end(address);
                self.say(&format!("{address}: failed: {error}"));
                if self.view == View::Json {
                    let elapsed = started.map_or(0, |s| s.elapsed().as_secs());
                    self.hook(
                        "apply_errored",
                        &format!(
                            "{address}: {} errored after {elapsed}s",
                            words(*kind).finished
                        ),
                        address,
                        json!({"action": machine::hook_action(*kind), "elapsed_seconds": elapsed}),
                    );
                    machine::emit(machine::diagnostic(error, Some(address)));
                }
            }
            Progress::RollbackStarted { tenant, resources } => self.say(&format!(
                "{tenant}: provisioning failed; rolling back {resources} resource{} created by this run",
                super::plural(*resources)
            )),
        }
    }

    /// The step is no longer in flight; when it started.
    fn end(&self, address: &ResourceAddress) -> Option<Instant> {
        let step = self
            .in_flight
            .lock()
            .expect("progress lock")
            .remove(address)?;
        if let (Some(bar), Some(multi)) = (&step.bar, &self.live) {
            bar.finish_and_clear();
            multi.remove(bar);
        }
        Some(step.started)
    }

    /// Every half second: the heartbeat of the steps that have run another ten
    /// seconds (the live view's spinners show their own time instead).
    fn beat(&self) {
        if self.view == View::Live {
            return;
        }
        let mut due_now = Vec::new();
        for (address, step) in self.in_flight.lock().expect("progress lock").iter_mut() {
            let due = HEARTBEAT * (step.beats + 1);
            if step.started.elapsed() >= due {
                step.beats += 1;
                due_now.push((address.clone(), step.kind, due.as_secs()));
            }
        }
        for (address, kind, secs) in due_now {
            let text = format!(
                "{address}: Still {}... [{secs}s elapsed]",
                words(kind).still
            );
            self.say(&text);
            if self.view == View::Json {
                self.hook(
                    "apply_progress",
                    &text,
                    &address,
                    json!({"action": machine::hook_action(kind), "elapsed_seconds": secs}),
                );
            }
        }
    }
}

/// The progress of one apply: its [`ProgressSink`] and the heartbeat of the steps in
/// flight, which stops (and the live view is cleared) when this is dropped.
pub struct ProgressView {
    shared: Arc<Shared>,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl ProgressView {
    pub fn new(view: View) -> ProgressView {
        let live = (view == View::Live)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout()));
        let shared = Arc::new(Shared {
            view,
            in_flight: Mutex::default(),
            ids: Mutex::default(),
            live,
        });
        let beating = shared.clone();
        let heartbeat = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                beating.beat();
            }
        });
        ProgressView { shared, heartbeat }
    }

    /// The sink to hand to the apply.
    pub fn sink(&self) -> ProgressSink {
        let shared = self.shared.clone();
        Arc::new(move |p: &Progress| shared.on(p))
    }

    /// Learns the physical id of each resource the plan changes, for `apply_complete`.
    pub fn know(&self, plan: &Plan) {
        let mut ids = self.shared.ids.lock().expect("progress lock");
        for c in plan.changes() {
            let attributes = c
                .after
                .as_ref()
                .map(|r| &r.attributes)
                .or(c.before.as_ref());
            if let Some(id) = attributes.and_then(|a| physical_id(c.address.resource_type, a)) {
                ids.insert(c.address.clone(), id);
            }
        }
    }
}

impl Drop for ProgressView {
    fn drop(&mut self) {
        self.heartbeat.abort();
        if let Some(multi) = &self.shared.live {
            multi.clear().ok();
        }
    }
}

/// How Terraform's lines name a step of one kind.
struct Words {
    started: &'static str,
    finished: &'static str,
    still: &'static str,
}

fn words(kind: StepKind) -> Words {
    let (started, finished, still) = match kind {
        StepKind::Create => ("Creating", "Creation", "creating"),
        StepKind::Update => ("Modifying", "Modifications", "modifying"),
        StepKind::Delete => ("Destroying", "Destruction", "destroying"),
    };
    Words {
        started,
        finished,
        still,
    }
}
