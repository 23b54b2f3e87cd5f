//! What a worker does: one provider call, and one message back.
//!
//! A worker is handed a [`StepCall`] (everything the call needs, copied out of the plan
//! and the tenant's state by the coordinator) and answers with exactly one
//! [`StepEvent`]. It never sees a state, a lock or the queue: what the call means for
//! the tenant's state is decided by the coordinator alone, in [`super::drain`].

use std::sync::Arc;

use petgraph::graph::NodeIndex;

use crate::provider::{CreateMode, Provider, ProviderError};
use crate::resource::{Attributes, Resource, ResourceAddress};

/// One provider call, with its arguments.
pub(super) enum StepCall {
    Create {
        resource: Resource,
        mode: CreateMode,
    },
    Update {
        resource: Resource,
        /// The attributes state records now.
        current: Attributes,
        /// The names of the attributes that differ.
        changed: Vec<String>,
    },
    Delete {
        address: ResourceAddress,
        current: Attributes,
    },
}

/// What a worker tells the coordinator when its call is over: the only way a provider
/// call's outcome reaches the apply.
#[derive(Debug)]
pub(super) enum StepEvent {
    /// The call succeeded; `computed` holds what the provider computed (a generated
    /// password, an ARN), empty for a delete.
    Finished {
        node: NodeIndex,
        computed: Attributes,
    },
    /// The call failed; nothing is known to have changed unless the provider says so in
    /// its error (see the provider contract).
    Failed {
        node: NodeIndex,
        error: ProviderError,
    },
}

/// Makes the call of step `node`.
pub(super) async fn perform(
    node: NodeIndex,
    provider: Arc<dyn Provider>,
    call: StepCall,
) -> StepEvent {
    let result = match call {
        StepCall::Create { resource, mode } => provider.create(&resource, mode).await,
        StepCall::Update {
            resource,
            current,
            changed,
        } => provider.update(&resource, &current, &changed).await,
        StepCall::Delete { address, current } => provider
            .delete(&address, &current)
            .await
            .map(|()| Attributes::new()),
    };
    match result {
        Ok(computed) => StepEvent::Finished { node, computed },
        Err(error) => StepEvent::Failed { node, error },
    }
}
