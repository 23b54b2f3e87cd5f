//! Edits of a tenant's state that change no resource: `state rm` (forget a resource,
//! which goes on existing unmanaged) and `state mv` (give a recorded resource another
//! name). Both are pure: the caller loads the state under the tenant's lock and writes
//! the result as the next serial, so an edit is as atomic as any other write.
//!
//! What Terraform users expect, with the limits of a tenant's state: a move stays
//! inside one tenant and keeps the resource's type (a resource's type decides which
//! provider reads it, and another tenant's state must never name this tenant's
//! objects). References to an edited address in other records' `depends_on` follow the
//! edit, so that the order of a later destroy stays right.

use crate::resource::ResourceAddress;

use super::TenantState;

/// Why an edit of state was refused. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum StateEditError {
    /// The address is not in state.
    #[error("no resource {0} in state")]
    NotInState(ResourceAddress),
    /// A move would take the resource to another tenant.
    #[error(
        "cannot move {from} to {to}: a move stays inside one tenant ({}); to hand a resource to another tenant, `state rm` it here and `tenantform import` it there",
        from.tenant
    )]
    AcrossTenants {
        from: ResourceAddress,
        to: ResourceAddress,
    },
    /// A move would change the resource's type.
    #[error(
        "cannot move {from} to {to}: a move keeps the resource's type ({}); give the new address the same type",
        from.resource_type
    )]
    ChangesType {
        from: ResourceAddress,
        to: ResourceAddress,
    },
    /// The target address of a move is already in state.
    #[error("cannot move {from} to {to}: {to} is already in state; `state rm` it first")]
    TargetTaken {
        from: ResourceAddress,
        to: ResourceAddress,
    },
}

/// Forgets `addresses` (all of `state`'s tenant): each must be in state. Returns them
/// in the order given, with duplicates dropped.
pub fn remove_resources(
    state: &mut TenantState,
    addresses: &[ResourceAddress],
) -> Result<Vec<ResourceAddress>, StateEditError> {
    let mut removed: Vec<ResourceAddress> = Vec::new();
    for a in addresses {
        if removed.contains(a) {
            continue;
        }
        if a.tenant != state.tenant || !state.resources.contains_key(&a.local()) {
            return Err(StateEditError::NotInState(a.clone()));
        }
        removed.push(a.clone());
    }
    for a in &removed {
        state.resources.remove(&a.local());
    }
    for r in state.resources.values_mut() {
        r.depends_on.retain(|d| !removed.contains(d));
    }
    Ok(removed)
}

/// Records the resource at `from` under `to` (same tenant, same type, `to` free).
pub fn move_resource(
    state: &mut TenantState,
    from: &ResourceAddress,
    to: &ResourceAddress,
) -> Result<(), StateEditError> {
    let pair = || (from.clone(), to.clone());
    if from.tenant != state.tenant || !state.resources.contains_key(&from.local()) {
        return Err(StateEditError::NotInState(from.clone()));
    }
    if to.tenant != from.tenant {
        let (from, to) = pair();
        return Err(StateEditError::AcrossTenants { from, to });
    }
    if to.resource_type != from.resource_type {
        let (from, to) = pair();
        return Err(StateEditError::ChangesType { from, to });
    }
    if from == to {
        return Ok(());
    }
    if state.resources.contains_key(&to.local()) {
        let (from, to) = pair();
        return Err(StateEditError::TargetTaken { from, to });
    }
    let mut record = state
        .resources
        .remove(&from.local())
        .expect("checked above");
    record.name = to.name.clone();
    state.resources.insert(to.local(), record);
    for r in state.resources.values_mut() {
        for d in &mut r.depends_on {
            if d == from {
                *d = to.clone();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{Attributes, ResourceType, TenantId};
    use crate::state::{ResourceState, ResourceStatus};

    fn tenant() -> TenantId {
        "acme".parse().unwrap()
    }

    fn address(t: ResourceType, name: &str) -> ResourceAddress {
        ResourceAddress::new(&tenant(), t, name)
    }

    fn record(t: ResourceType, name: &str, deps: &[ResourceAddress]) -> ResourceState {
        ResourceState {
            resource_type: t,
            name: name.into(),
            status: ResourceStatus::Created,
            attributes: Attributes::new(),
            depends_on: deps.to_vec(),
            create_token: None,
        }
    }

    /// A bucket and its policy, which depends on it.
    fn state() -> TenantState {
        let mut s = TenantState::new(tenant());
        let bucket = address(ResourceType::S3Bucket, "documents");
        s.resources.insert(
            bucket.local(),
            record(ResourceType::S3Bucket, "documents", &[]),
        );
        let policy = address(ResourceType::S3BucketPolicy, "documents");
        s.resources.insert(
            policy.local(),
            record(ResourceType::S3BucketPolicy, "documents", &[bucket]),
        );
        s
    }

    #[test]
    fn a_removed_resource_leaves_the_state_and_the_dependencies_of_others() {
        let mut s = state();
        let bucket = address(ResourceType::S3Bucket, "documents");
        let removed = remove_resources(&mut s, &[bucket.clone(), bucket.clone()]).unwrap();
        assert_eq!(removed, vec![bucket.clone()]);
        assert!(!s.resources.contains_key(&bucket.local()));
        let policy = &s.resources["s3_bucket_policy.documents"];
        assert!(policy.depends_on.is_empty());
    }

    #[test]
    fn removing_an_unknown_address_changes_nothing() {
        let mut s = state();
        let before = s.clone();
        let known = address(ResourceType::S3Bucket, "documents");
        let unknown = address(ResourceType::S3Bucket, "archive");
        let err = remove_resources(&mut s, &[known, unknown.clone()]).unwrap_err();
        assert!(matches!(err, StateEditError::NotInState(a) if a == unknown));
        assert_eq!(s, before);
        let other: TenantId = "other".parse().unwrap();
        let elsewhere = ResourceAddress::new(&other, ResourceType::S3Bucket, "documents");
        assert!(remove_resources(&mut s, &[elsewhere]).is_err());
        assert_eq!(s, before);
    }

    #[test]
    fn a_moved_resource_keeps_its_record_and_is_followed_by_its_dependents() {
        let mut s = state();
        let from = address(ResourceType::S3Bucket, "documents");
        let to = address(ResourceType::S3Bucket, "archive");
        let before = s.resources[&from.local()].clone();
        move_resource(&mut s, &from, &to).unwrap();
        assert!(!s.resources.contains_key(&from.local()));
        let moved = &s.resources[&to.local()];
        assert_eq!(moved.name, "archive");
        assert_eq!(moved.attributes, before.attributes);
        assert_eq!(
            s.resources["s3_bucket_policy.documents"].depends_on,
            vec![to]
        );
    }

    #[test]
    fn a_move_across_tenants_types_or_onto_a_taken_address_is_refused() {
        let mut s = state();
        s.resources.insert(
            "s3_bucket.archive".into(),
            record(ResourceType::S3Bucket, "archive", &[]),
        );
        let before = s.clone();
        let from = address(ResourceType::S3Bucket, "documents");
        let other: TenantId = "other".parse().unwrap();
        let refused = [
            (
                ResourceAddress::new(&other, ResourceType::S3Bucket, "documents"),
                "inside one tenant",
            ),
            (
                address(ResourceType::IamRole, "documents"),
                "keeps the resource's type",
            ),
            (
                address(ResourceType::S3Bucket, "archive"),
                "already in state",
            ),
        ];
        for (to, says) in refused {
            let err = move_resource(&mut s, &from, &to).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
            assert_eq!(s, before, "a refused move changes nothing");
        }
        move_resource(&mut s, &from, &from).unwrap();
        assert_eq!(s, before, "a move onto itself changes nothing");
    }
}
