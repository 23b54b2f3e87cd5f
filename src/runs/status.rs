//! What a run does ([`Operation`]) and where it stands ([`RunStatus`]), with the moves
//! between statuses in one place. The names are HCP Terraform's where they fit.
//!
//! ```text
//! pending ─> planning ─┬─> planned ─┬─> confirmed ─> applying ─┬─> applied
//!    │          │      │            └─> discarded              ├─> rolling_back ─> rolled_back
//!    │          │      └─> planned_and_finished (no changes,   ├─> errored
//!    │          │          a drift report)                     └─> canceled
//!    │          ├─> applying (the plan of an auto-apply run is confirmed at once)
//!    │          └─> errored / canceled / applied / rolled_back
//!    └─> canceled
//! ```
//!
//! `planning`, `applying` and `rolling_back` are the *active* statuses: a worker holds
//! the run's lease, and the database admits one active run per tenant. A run taken over
//! after its worker died goes back to `planning` (it re-plans from the last state
//! checkpoint), except the apply of a confirmed plan, which stays `applying`.

use serde::{Deserialize, Serialize};

/// The one name of each variant of an enum (also its serde name): `ALL`, `as_str`,
/// `Display`, and `FromStr`, whose error lists the names.
macro_rules! names {
    ($ty:ident, $what:literal, [$($variant:ident = $name:literal),+ $(,)?]) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The name as stored and shown (also the serde name).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $ty::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    format!(
                        "unknown {} {s:?}; use one of: {}",
                        $what,
                        $ty::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
                    )
                })
            }
        }
    };
}
pub(crate) use names;

/// What a run does to its tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Plan and store the plan; with auto-apply, apply it at once, else wait for
    /// `runs apply`.
    Plan,
    /// Plan and apply (auto-apply), or plan and wait for confirmation.
    Apply,
    /// Plan the deletion of every resource and apply it, like `apply`.
    Destroy,
    /// Read everything back and report drift; changes nothing.
    Drift,
    /// Accept reality into state (the refresh-only apply).
    Refresh,
    /// The lifecycle of an approved tenant request: apply, configure, validate,
    /// activate (or roll back).
    Provision,
}

names!(
    Operation,
    "operation",
    [
        Plan = "plan",
        Apply = "apply",
        Destroy = "destroy",
        Drift = "drift",
        Refresh = "refresh",
        Provision = "provision",
    ]
);

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Queued; waits for a worker (and for the tenant's earlier runs).
    Pending,
    /// A worker refreshes and plans (or, for a provisioning, works through its stages).
    Planning,
    /// The plan is stored and waits for `runs apply` (or `runs discard`).
    Planned,
    /// Finished without anything to apply: no changes, or a report (drift).
    PlannedAndFinished,
    /// Someone confirmed the plan; queued for a worker to apply it.
    Confirmed,
    /// A worker applies the confirmed plan.
    Applying,
    /// The plan was applied. Final.
    Applied,
    /// A new tenant whose provisioning failed is being undone.
    RollingBack,
    /// The failed provisioning was undone. Final.
    RolledBack,
    /// The run failed; its events say why. Final.
    Errored,
    /// Someone canceled the run. Final.
    Canceled,
    /// A planned run that was not applied.
    Discarded,
}

names!(
    RunStatus,
    "run status",
    [
        Pending = "pending",
        Planning = "planning",
        Planned = "planned",
        PlannedAndFinished = "planned_and_finished",
        Confirmed = "confirmed",
        Applying = "applying",
        Applied = "applied",
        RollingBack = "rolling_back",
        RolledBack = "rolled_back",
        Errored = "errored",
        Canceled = "canceled",
        Discarded = "discarded",
    ]
);

impl RunStatus {
    /// A worker holds the run; one such run per tenant at a time.
    pub const ACTIVE: [RunStatus; 3] = [
        RunStatus::Planning,
        RunStatus::Applying,
        RunStatus::RollingBack,
    ];

    /// Queued for a worker.
    pub const WAITING: [RunStatus; 2] = [RunStatus::Pending, RunStatus::Confirmed];

    /// Whether a worker holds the run ([`RunStatus::ACTIVE`]).
    pub fn is_active(self) -> bool {
        RunStatus::ACTIVE.contains(&self)
    }

    /// Whether the run is queued for a worker ([`RunStatus::WAITING`]).
    pub fn is_waiting(self) -> bool {
        RunStatus::WAITING.contains(&self)
    }

    /// Nothing more happens to the run.
    pub fn is_final(self) -> bool {
        self.next().is_empty()
    }

    /// Nothing more happens without someone acting: final, or a plan that waits for
    /// confirmation. A follower (`runs show --follow`, `--wait`) stops here.
    pub fn is_settled(self) -> bool {
        self.is_final() || self == RunStatus::Planned
    }

    /// The statuses this one may move to.
    pub fn next(self) -> &'static [RunStatus] {
        use RunStatus::*;
        match self {
            Pending => &[Planning, Canceled],
            Planning => &[
                Planning,
                Planned,
                PlannedAndFinished,
                Applying,
                Applied,
                RollingBack,
                RolledBack,
                Errored,
                Canceled,
            ],
            Planned => &[Confirmed, Discarded],
            Confirmed => &[Applying, Canceled],
            Applying => &[
                Planning,
                Applying,
                Applied,
                RollingBack,
                RolledBack,
                Errored,
                Canceled,
            ],
            RollingBack => &[Planning, RolledBack, Errored, Canceled],
            PlannedAndFinished | Applied | RolledBack | Errored | Canceled | Discarded => &[],
        }
    }
}

/// A move between statuses that is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "run {run} cannot go from {from} to {to}; from {from} it can go to: {}",
    if from.next().is_empty() { "nothing (it is final)".to_owned() } else { from.next().iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ") }
)]
pub struct IllegalRunTransition {
    pub run: String,
    pub from: RunStatus,
    pub to: RunStatus,
}

/// Checks one move: the only place that decides what is legal.
pub fn check_run_transition(
    run: &str,
    from: RunStatus,
    to: RunStatus,
) -> Result<(), IllegalRunTransition> {
    if from.next().contains(&to) {
        Ok(())
    } else {
        Err(IllegalRunTransition {
            run: run.to_owned(),
            from,
            to,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for &s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for &o in Operation::ALL {
            assert_eq!(o.as_str().parse::<Operation>().unwrap(), o);
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
        assert!(
            "apply-all"
                .parse::<Operation>()
                .unwrap_err()
                .contains("plan, apply, destroy, drift, refresh, provision")
        );
    }

    #[test]
    fn active_waiting_and_final_do_not_overlap() {
        for &s in RunStatus::ALL {
            let kinds = [s.is_active(), s.is_waiting(), s.is_final()];
            assert!(kinds.iter().filter(|k| **k).count() <= 1, "{s}");
        }
        assert!(!RunStatus::Planned.is_final() && RunStatus::Planned.is_settled());
        assert!(RunStatus::Applied.is_final() && RunStatus::Applied.is_settled());
        assert!(!RunStatus::Applying.is_settled());
    }

    #[test]
    fn a_plan_is_applied_only_after_confirmation() {
        use RunStatus::*;
        for (from, to) in [
            (Pending, Planning),
            (Planning, Planned),
            (Planned, Confirmed),
            (Confirmed, Applying),
            (Applying, Applied),
            (Applying, Planning),
        ] {
            check_run_transition("r", from, to).unwrap();
        }
        for (from, to) in [
            (Planned, Applying),
            (Pending, Applied),
            (Applied, Planning),
            (Discarded, Confirmed),
        ] {
            let e = check_run_transition("r", from, to).unwrap_err();
            assert!(
                e.to_string()
                    .contains(&format!("cannot go from {from} to {to}")),
                "{e}"
            );
        }
    }
}
