//! The statuses of a tenant request and the transitions between them, in one place.
//!
//! ```text
//! pending_approval ─┬─> approved ─> provisioning ─> validating ─> active
//!                   └─> rejected        │   ▲            │  │
//!                                       │   │ retry      │  └─> failed (activation blocked)
//!                                       ▼   │            ▼
//!                          rolled_back / failed <────────┘
//!
//! active ───> destroyed           (destroy left the tenant with nothing)
//! failed ───> destroyed           (the same, for a failed tenant whose resources were kept)
//! destroyed ─> pending_approval   (a new request for the same id)
//! ```
//!
//! `rolled_back` and `failed` may be retried (back to `provisioning`). Re-validating an
//! active tenant (`validate-tenant`) records checks without changing its status. A
//! tenant that `destroy` left with nothing is `destroyed` (from `active`, or from
//! `failed` when its resources were kept); a new request for its id starts over at
//! `pending_approval`, in the same record and audit trail.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Submitted; waits for the approvals its tier and data need.
    PendingApproval,
    /// Every approval is in; provisioning has not started.
    Approved,
    /// An approver rejected it. Final.
    Rejected,
    /// The tenant's resources are being created.
    Provisioning,
    /// Created; the checks run before the tenant is activated.
    Validating,
    /// Provisioned and checked: the tenant is in service.
    Active,
    /// Provisioning or a check failed and the resources were kept; may be retried.
    Failed,
    /// Provisioning failed and what it made was removed; may be retried.
    RolledBack,
    /// Destroy left the tenant with nothing; a new request for its id starts over.
    Destroyed,
}

impl RequestStatus {
    /// Every status, in declaration order.
    pub const ALL: [RequestStatus; 9] = [
        RequestStatus::PendingApproval,
        RequestStatus::Approved,
        RequestStatus::Rejected,
        RequestStatus::Provisioning,
        RequestStatus::Validating,
        RequestStatus::Active,
        RequestStatus::Failed,
        RequestStatus::RolledBack,
        RequestStatus::Destroyed,
    ];

    /// The status as stored and shown (`pending_approval`).
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::PendingApproval => "pending_approval",
            RequestStatus::Approved => "approved",
            RequestStatus::Rejected => "rejected",
            RequestStatus::Provisioning => "provisioning",
            RequestStatus::Validating => "validating",
            RequestStatus::Active => "active",
            RequestStatus::Failed => "failed",
            RequestStatus::RolledBack => "rolled_back",
            RequestStatus::Destroyed => "destroyed",
        }
    }

    /// The statuses this one may move to.
    pub fn next(self) -> &'static [RequestStatus] {
        use RequestStatus::*;
        match self {
            PendingApproval => &[Approved, Rejected],
            Approved => &[Provisioning],
            Rejected => &[],
            Provisioning => &[Validating, RolledBack, Failed],
            Validating => &[Active, RolledBack, Failed],
            Active => &[Destroyed],
            Failed => &[Provisioning, Destroyed],
            RolledBack => &[Provisioning],
            Destroyed => &[PendingApproval],
        }
    }

    /// Whether nothing more happens without someone acting.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            RequestStatus::Rejected
                | RequestStatus::Active
                | RequestStatus::Failed
                | RequestStatus::RolledBack
                | RequestStatus::Destroyed
                | RequestStatus::PendingApproval
        )
    }
}

impl fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RequestStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        RequestStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown request status {s:?}"))
    }
}

/// A transition that is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "request {request} cannot go from {from} to {to}; from {from} it can go to: {}",
    if from.next().is_empty() { "nothing (it is final)".to_owned() } else { from.next().iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ") }
)]
pub struct IllegalTransition {
    pub request: String,
    pub from: RequestStatus,
    pub to: RequestStatus,
}

/// Checks one transition: the only place that decides what is legal.
pub fn check_transition(
    request: &str,
    from: RequestStatus,
    to: RequestStatus,
) -> Result<(), IllegalTransition> {
    if from.next().contains(&to) {
        Ok(())
    } else {
        Err(IllegalTransition {
            request: request.to_owned(),
            from,
            to,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_happy_path_is_legal_and_shortcuts_are_not() {
        use RequestStatus::*;
        let path = [
            PendingApproval,
            Approved,
            Provisioning,
            Validating,
            Active,
            Destroyed,
            PendingApproval,
        ];
        for w in path.windows(2) {
            check_transition("r", w[0], w[1]).unwrap();
        }
        for (from, to) in [
            (PendingApproval, Provisioning),
            (PendingApproval, Active),
            (Approved, Active),
            (Rejected, Approved),
            (Rejected, Provisioning),
            (Provisioning, Active),
            (Active, RolledBack),
            (RolledBack, Active),
            (Destroyed, Provisioning),
            (Destroyed, Active),
            (Provisioning, Destroyed),
        ] {
            let e = check_transition("r", from, to).unwrap_err();
            assert!(
                e.to_string()
                    .contains(&format!("cannot go from {from} to {to}")),
                "{e}"
            );
        }
        assert!(
            check_transition("r", Rejected, Approved)
                .unwrap_err()
                .to_string()
                .contains("nothing (it is final)")
        );
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in RequestStatus::ALL {
            assert_eq!(s.as_str().parse::<RequestStatus>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
