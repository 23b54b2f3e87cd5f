//! tenantform: declarative tenant infrastructure for a multi-tenant RAG platform.
//!
//! Tenant specs are diffed against stored state into a dependency graph of resource
//! actions, which are executed directly through the services' own client libraries.
//! The pipeline runs one way:
//!
//! ```text
//! spec -> blueprint -> plan (diff against state, action graph) -> apply -> providers
//! ```
//!
//! The [`Engine`] is the front door:
//!
//! ```no_run
//! use tenantform::{ApplyOptions, Engine, EngineConfig, PlanOptions};
//!
//! # async fn run() -> Result<(), tenantform::Error> {
//! let engine = Engine::new(EngineConfig {
//!     specs_dir: "specs".into(),
//!     state_dir: "state".into(),
//!     ..EngineConfig::default()
//! });
//! let plan = engine.plan(&PlanOptions::default()).await?;
//! println!("{}", tenantform::plan::render::human(&plan, tenantform::plan::render::Style { color: false }));
//! if plan.has_changes() {
//!     let report = engine.apply_plan(&plan, &ApplyOptions::default(), None).await?;
//!     assert!(report.succeeded());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! See `ARCHITECTURE.md` for the code map and the invariants each module keeps.

pub mod adopt;
pub mod apply;
pub mod blueprint;
pub mod connect;
pub mod drift;
mod engine;
pub mod environment;
mod error;
pub mod outputs;
pub mod plan;
pub mod policy;
pub mod provider;
pub mod report;
pub mod resource;
pub mod runs;
pub mod secret;
pub mod server;
pub mod show;
pub mod spec;
pub mod state;
pub mod workflow;

pub use apply::{ApplyOptions, ApplyReport, Progress, TenantOutcome};
pub use drift::DriftReport;
pub use engine::{
    BulkRead, Engine, EngineConfig, PlanOptions, check_plan_fresh, import_id, platform_providers,
};
pub use environment::Environment;
pub use error::Error;
pub use plan::{Action, Plan, PlanMode};
pub use policy::{PolicyLevel, PolicyReport, PolicyViolation};
pub use report::{OutputFormat, Report};
pub use resource::{ResourceAddress, ResourceType, TenantId};
pub use state::RunRef;
