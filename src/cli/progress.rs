//! What `apply` and `destroy` print while they run: one line per step as it starts and
//! ends, and, as Terraform does, `ADDR: Still creating... [10s elapsed]` every ten
//! seconds of a step that is still running, so that a long step (an ElastiCache
//! cluster can take many minutes) shows life instead of silence. Human progress goes
//! to stderr when stdout carries JSON.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tenantform::apply::{Progress, ProgressSink};
use tenantform::plan::graph::StepKind;

/// How often a running step says it is still running.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// Stops the heartbeat when dropped (when the apply is over).
pub struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A step in flight: its kind, when it started, and how many beats it has had.
struct InFlight {
    kind: StepKind,
    started: Instant,
    beats: u32,
}

/// The sink that prints each step's progress, and the heartbeat of the steps in flight
/// (which runs until the returned [`Heartbeat`] is dropped).
pub fn progress_sink(json: bool) -> (ProgressSink, Heartbeat) {
    let say = move |line: String| {
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let in_flight: Arc<Mutex<BTreeMap<String, InFlight>>> = Arc::default();
    let beating = in_flight.clone();
    let heartbeat = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let mut steps = beating.lock().expect("progress lock");
            for (address, step) in steps.iter_mut() {
                let due = HEARTBEAT * (step.beats + 1);
                if step.started.elapsed() >= due {
                    step.beats += 1;
                    say(format!(
                        "{address}: Still {}... [{}s elapsed]",
                        words(step.kind).still,
                        due.as_secs()
                    ));
                }
            }
        }
    });
    let sink: ProgressSink = Arc::new(move |p: &Progress| {
        let line = match p {
            Progress::Started { address, kind } => {
                in_flight.lock().expect("progress lock").insert(
                    address.to_string(),
                    InFlight {
                        kind: *kind,
                        started: Instant::now(),
                        beats: 0,
                    },
                );
                format!("{address}: {}...", words(*kind).started)
            }
            Progress::Finished {
                address,
                kind,
                elapsed,
            } => {
                in_flight
                    .lock()
                    .expect("progress lock")
                    .remove(&address.to_string());
                format!(
                    "{address}: {} complete after {:.2}s",
                    words(*kind).finished,
                    elapsed.as_secs_f64()
                )
            }
            Progress::Failed { address, error, .. } => {
                in_flight
                    .lock()
                    .expect("progress lock")
                    .remove(&address.to_string());
                format!("{address}: failed: {error}")
            }
            Progress::RollbackStarted { tenant, resources } => format!(
                "{tenant}: provisioning failed; rolling back {resources} resource{} created by this run",
                super::plural(*resources)
            ),
        };
        say(line);
    });
    (sink, Heartbeat(heartbeat))
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
