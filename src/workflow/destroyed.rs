//! The end of a tenant: after a destroy, its request says `destroyed`.
//!
//! The engine's destroy knows nothing of requests (the workflow stands on the engine,
//! not the other way round), so whoever destroys tells the workflow afterwards, as
//! `tenantform destroy` does. The record is made only when the tenant has no state
//! left: a destroy that failed part way, was interrupted or was refused leaves the
//! request as it was, and running it again records it.

use serde_json::json;

use super::registry::Request;
use super::status::RequestStatus;
use super::{Workflow, WorkflowError};
use crate::resource::TenantId;

impl Workflow<'_> {
    /// Records that `tenant` was destroyed: its request (if the tenant came from one)
    /// moves from `active` or `failed` to `destroyed`, with its audit entry, and the
    /// request's spec leaves the registry, so that a later apply does not bring the
    /// tenant back (an exported spec file is the user's, and stays). Returns the
    /// request when it moved; `None` when there is no request, it is already
    /// `destroyed`, or it is in a status a destroy does not end (a rolled-back request
    /// has nothing to destroy and stays retriable).
    pub async fn record_destroyed(
        &mut self,
        tenant: &TenantId,
        actor: &str,
    ) -> Result<Option<Request>, WorkflowError> {
        let Some(request) = self.registry.get(tenant.as_str()).await? else {
            return Ok(None);
        };
        if !request.status.next().contains(&RequestStatus::Destroyed) {
            return Ok(None);
        }
        if self.load_state(tenant).await?.is_some() {
            return Err(WorkflowError::Conflict(format!(
                "tenant {tenant} still has resources in its state, so request {} stays {}; \
                 finish the destroy with `tenantform destroy --tenant {tenant}`",
                request.id, request.status
            )));
        }
        let request = self
            .registry
            .transition(
                &request.id,
                request.status,
                RequestStatus::Destroyed,
                actor,
                None,
                json!({"reason": "destroy removed every resource of the tenant"}),
            )
            .await?;
        self.remove_spec(&request.id).await?;
        Ok(Some(request))
    }
}
