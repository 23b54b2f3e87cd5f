//! Vector namespaces: where a tenant's embeddings live. The attributes are the same
//! whichever backend serves them; `backend` names it.

use super::{AttributeSchema as A, ResourceType, Schema};

/// The tenant's vector namespace (`vector_namespace`).
pub static NAMESPACE: Schema = Schema {
    resource_type: ResourceType::VectorNamespace,
    attributes: &[
        A::force_new("backend"),
        A::force_new("schema"),
        A::force_new("table"),
        A::force_new("dimension"),
        A::updatable("distance"),
        A::updatable("hnsw_m"),
        A::updatable("hnsw_ef_construction"),
    ],
    replace_note: "stored embeddings cannot change backend, place or dimension (they must be re-embedded)",
};
