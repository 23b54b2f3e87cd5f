//! Runs and workers: `tenantform worker` and `runs list|show|start|apply|discard|
//! cancel|resume`, and how a lifecycle command settles the run it queued.

use std::time::Duration;

use anyhow::{Context, bail};

use tenantform::Engine;
use tenantform::connect::postgres::PostgresConfig;
use tenantform::runs::render as runs_render;
use tenantform::runs::{
    NewRun, Run, RunContext, RunEvent, RunFilter, RunQueue, RunStatus, RunView, Shutdown, Worker,
    follow, settle, view,
};
use tenantform::spec::RunExecutor;
use tenantform::state::StateStore;

use super::Outcome;
use super::args::{Cli, RunAction, RunsCommand, WorkerArgs};

/// Where followed events go.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Print {
    Stdout,
    Stderr,
}

/// What the runs commands need: where runs execute and how.
pub struct RunsCli {
    pub cx: RunContext,
    pub pg: PostgresConfig,
    store: StateStore,
}

impl RunsCli {
    /// `executes`: this command may execute runs (a provisioning's validation then
    /// needs metrics to scrape: see [`loopback_metrics_url`]).
    pub async fn load(cli: &Cli, parallelism: usize, executes: bool) -> anyhow::Result<RunsCli> {
        let platform = tenantform::spec::load_platform(&cli.specs)?;
        let environment = tenantform::Environment::process();
        let pg = PostgresConfig::resolve(&platform.postgres, &environment)?;
        let store = StateStore::open(&platform, &cli.state, &environment)?;
        let metrics_url = match (executes, &platform.validation.metrics_url) {
            (true, None) => Some(loopback_metrics_url(&pg).await?),
            _ => None,
        };
        Ok(RunsCli {
            cx: RunContext {
                specs_dir: cli.specs.clone(),
                state_dir: cli.state.clone(),
                parallelism,
                settings: platform.runs.clone(),
                metrics_url,
                environment,
            },
            pg,
            store,
        })
    }
}

/// Serves tenantform's own metrics on a loopback port while this process runs, for the
/// validation's metrics check when `[validation] metrics_url` names no endpoint of the
/// platform; returns their URL.
pub async fn loopback_metrics_url(pg: &PostgresConfig) -> anyhow::Result<String> {
    // The handle is dropped, not aborted: the server runs until the process ends.
    let (addr, _) = tenantform::server::serve_metrics_on_loopback(pg.clone())
        .await
        .context("serving metrics on a loopback port for the validation checks")?;
    Ok(format!("http://{addr}/metrics"))
}

/// Settles a queued run ([`settle`]; Ctrl-C releases an embedded run for `runs
/// resume` or a worker). Events are printed as they happen when `print` says where.
pub async fn execute_or_follow(
    runs: &RunsCli,
    queue: &RunQueue,
    id: uuid::Uuid,
    wait: bool,
    print: Option<Print>,
) -> anyhow::Result<Option<Run>> {
    let on_event = move |e: &RunEvent| match print {
        Some(Print::Stdout) => println!("{}", runs_render::event_line(e)),
        Some(Print::Stderr) => eprintln!("{}", runs_render::event_line(e)),
        None => {}
    };
    let shutdown = Shutdown::default();
    let interrupt = shutdown.clone();
    let signals = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nInterrupt received: stopping the run and releasing it.");
            interrupt.drain.cancel();
            interrupt.stop.cancel();
        }
    });
    let settled = settle(&runs.cx, &runs.pg, queue, id, wait, shutdown, on_event).await;
    signals.abort();
    let settled = settled?;
    if settled.is_none() {
        eprintln!(
            "Run {id} was released: resume it with `tenantform runs resume {id}`, or a worker takes it over."
        );
    }
    Ok(settled)
}

/// With workers as the executor, says so when none is alive: the run waits.
pub async fn warn_without_workers(runs: &RunsCli, queue: &RunQueue) -> anyhow::Result<()> {
    let within = Duration::from_secs(runs.cx.settings.lease_secs);
    if queue.live_workers(within).await?.is_empty() {
        eprintln!(
            "Note: no worker has been alive in the last {} s; the run waits until `tenantform worker` runs.",
            within.as_secs()
        );
    }
    Ok(())
}

/// `tenantform worker`: executes queued runs until SIGTERM (or Ctrl-C): the first
/// signal finishes the runs in flight and exits 0, a second releases them at once.
pub async fn cmd_worker(cli: &Cli, args: &WorkerArgs) -> anyhow::Result<Outcome> {
    use tokio::signal::unix::{SignalKind, signal};
    let runs = RunsCli::load(cli, args.parallelism as usize, true).await?;
    let worker = Worker::new(runs.cx.clone(), &runs.pg, args.concurrency as usize).await?;
    eprintln!(
        "Worker {} executing up to {} run(s) at once; SIGTERM finishes them and exits.",
        worker.id(),
        args.concurrency
    );
    let shutdown = Shutdown::default();
    let signals = shutdown.clone();
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        for step in 0..2 {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            if step == 0 {
                eprintln!(
                    "Stopping: finishing the runs in flight, claiming no new one (signal again to release them at once)."
                );
                signals.drain.cancel();
            } else {
                eprintln!("Releasing the runs in flight for other workers.");
                signals.stop.cancel();
            }
        }
    });
    worker.run(shutdown).await?;
    eprintln!("Worker stopped.");
    Ok(Outcome::Ok)
}

/// A run that ended badly makes the command fail, so that scripts notice.
fn ended(run: &Run) -> anyhow::Result<Outcome> {
    match run.status {
        RunStatus::Errored | RunStatus::RolledBack | RunStatus::Canceled => bail!(
            "run {} is {}: {}",
            run.id,
            run.status,
            run.error.as_deref().unwrap_or("see `tenantform runs show`")
        ),
        _ => Ok(Outcome::Ok),
    }
}

fn show(v: &RunView, json: bool) -> anyhow::Result<()> {
    if json {
        super::print_json(v)?;
    } else {
        print!("{}", runs_render::run_details(v));
    }
    Ok(())
}

/// `tenantform runs ...`.
pub async fn cmd_runs(cli: &Cli, cmd: &RunsCommand) -> anyhow::Result<Outcome> {
    let executes = matches!(
        cmd,
        RunsCommand::Start { .. } | RunsCommand::Apply { .. } | RunsCommand::Resume { .. }
    );
    let runs = RunsCli::load(cli, 10, executes).await?;
    let queue = RunQueue::open(&runs.pg).await?;
    let settle = |id: uuid::Uuid, wait: bool, json: bool| {
        let runs = &runs;
        let queue = &queue;
        async move {
            let print = (!json && (wait || runs.cx.settings.executor == RunExecutor::Embedded))
                .then_some(Print::Stdout);
            execute_or_follow(runs, queue, id, wait, print).await
        }
    };
    match cmd {
        RunsCommand::List {
            tenant,
            status,
            limit,
            json,
        } => {
            let list = queue
                .list(&RunFilter {
                    tenant: tenant.clone(),
                    status: *status,
                    limit: *limit,
                })
                .await?;
            let mut views = Vec::with_capacity(list.len());
            for r in list {
                views.push(view(&queue, &runs.store, r).await?);
            }
            let workers = queue
                .live_workers(Duration::from_secs(runs.cx.settings.lease_secs))
                .await?;
            if *json {
                super::print_json(&serde_json::json!({"runs": views, "workers": workers}))?;
            } else {
                if views.is_empty() {
                    println!("No runs yet.");
                } else {
                    println!("{}", runs_render::list_header());
                    for v in &views {
                        println!("{}", runs_render::run_line(v));
                    }
                }
                println!("{}", runs_render::workers_line(&workers));
            }
            Ok(Outcome::Ok)
        }
        RunsCommand::Show {
            id,
            follow: f,
            json,
        } => {
            let run = queue.find(id).await?;
            let run = if *f {
                let print = if *json { Print::Stderr } else { Print::Stdout };
                follow(&queue, run.id, |e| match print {
                    Print::Stdout => println!("{}", runs_render::event_line(e)),
                    Print::Stderr => eprintln!("{}", runs_render::event_line(e)),
                })
                .await?
            } else {
                run
            };
            let events = queue.events(run.id, 0).await?;
            let v = view(&queue, &runs.store, run).await?;
            if *json {
                let mut value = serde_json::to_value(&v)?;
                value["events"] = serde_json::to_value(&events)?;
                super::print_json(&value)?;
            } else {
                show(&v, false)?;
                if !*f {
                    println!("  events:");
                    for e in &events {
                        println!("    {}", runs_render::event_line(e));
                    }
                }
            }
            Ok(Outcome::Ok)
        }
        RunsCommand::Start {
            tenant,
            operation,
            auto_apply,
            rotate,
            message,
            action: RunAction { by, wait, json },
        } => {
            // Refuse a tenant that has neither a spec (file or registry) nor state now,
            // rather than when a worker gets to it.
            let engine = Engine::new(cli.engine_config());
            engine
                .select_tenants(&engine.specs().await?, std::slice::from_ref(tenant))
                .await?;
            let run = queue
                .enqueue(&NewRun {
                    tenant: tenant.clone(),
                    operation: *operation,
                    requested_by: by.clone(),
                    message: message.clone(),
                    auto_apply: *auto_apply,
                    rotate: *rotate,
                })
                .await?;
            if !json {
                println!("Queued run {} ({operation} of tenant {tenant}).", run.id);
                if runs.cx.settings.executor == RunExecutor::Workers && !wait {
                    warn_without_workers(&runs, &queue).await?;
                }
            }
            let Some(run) = settle(run.id, *wait, *json).await? else {
                return Ok(Outcome::Interrupted);
            };
            show(&view(&queue, &runs.store, run.clone()).await?, *json)?;
            ended(&run)
        }
        RunsCommand::Apply {
            id,
            action: RunAction { by, wait, json },
        } => {
            let run = queue.find(id).await?;
            let run = queue.confirm(&run, by).await?;
            if !json {
                println!(
                    "Confirmed run {}: its plan is queued to be applied.",
                    run.id
                );
            }
            let Some(run) = settle(run.id, *wait, *json).await? else {
                return Ok(Outcome::Interrupted);
            };
            show(&view(&queue, &runs.store, run.clone()).await?, *json)?;
            ended(&run)
        }
        RunsCommand::Discard { id, by } => {
            let run = queue.find(id).await?;
            let run = queue.discard(&run, by).await?;
            println!("Discarded run {}: its plan will not be applied.", run.id);
            Ok(Outcome::Ok)
        }
        RunsCommand::Cancel { id, by, json } => {
            let run = queue.find(id).await?;
            let run = queue.cancel(&run, by).await?;
            if *json {
                super::print_json(&run)?;
            } else if run.status.is_active() {
                println!(
                    "Cancel requested for run {}: its worker starts no new step and ends it after the steps in flight.",
                    run.id
                );
            } else {
                println!("Run {} is {}.", run.id, run.status);
            }
            Ok(Outcome::Ok)
        }
        RunsCommand::Resume { id, json } => {
            let run = queue.find(id).await?;
            let mut cx = runs.cx.clone();
            cx.settings.executor = RunExecutor::Embedded;
            let here = RunsCli {
                cx,
                pg: runs.pg.clone(),
                store: runs.store.clone(),
            };
            let print = (!json).then_some(Print::Stdout);
            let Some(run) = execute_or_follow(&here, &queue, run.id, true, print).await? else {
                return Ok(Outcome::Interrupted);
            };
            show(&view(&queue, &runs.store, run.clone()).await?, *json)?;
            ended(&run)
        }
    }
}
