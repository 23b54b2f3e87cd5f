//! The plan as a dependency graph of steps, for `apply` to walk.
//!
//! Each changing resource becomes one or two steps: a create, an update, a delete, or
//! for a replace a delete followed by a create. An edge `a -> b` means `a` must finish
//! before `b` starts:
//!
//! - creates and updates follow the creates and updates of what they depend on;
//! - deletes run in reverse: a resource is deleted before what it depends on;
//! - a replaced resource is deleted before it is created again;
//! - a resource that stays is updated before something it used to depend on is
//!   deleted (it may still refer to it).
//!
//! A cycle is an error naming the resources in it.

use std::collections::HashMap;

use petgraph::Direction;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use super::{Action, Plan, PlanError, ResourceChange};
use crate::resource::ResourceAddress;

/// What a step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StepKind {
    /// Create the resource (the create half of a replace, too).
    Create,
    /// Change the resource in place.
    Update,
    /// Delete the resource (the delete half of a replace, too).
    Delete,
}

/// One provider operation on one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Step {
    /// Index into `Plan::tenants`.
    pub tenant: usize,
    /// Index into that tenant's `changes`.
    pub change: usize,
    pub kind: StepKind,
}

impl Step {
    /// The change of `plan` this step carries out. Panics if the step is not from `plan`.
    pub fn change<'p>(&self, plan: &'p Plan) -> &'p ResourceChange {
        &plan.tenants[self.tenant].changes[self.change]
    }
}

/// The steps of a plan and the order constraints between them.
#[derive(Debug)]
pub struct ActionGraph {
    pub graph: DiGraph<Step, ()>,
}

#[derive(Default)]
struct Nodes {
    create: Option<NodeIndex>,
    update: Option<NodeIndex>,
    delete: Option<NodeIndex>,
    action: Option<Action>,
}

impl Nodes {
    /// The step after which the resource exists in its desired form.
    fn ready(&self) -> Option<NodeIndex> {
        self.create.or(self.update)
    }
}

impl ActionGraph {
    /// The steps of `plan` and their order: creates after what they depend on, deletes
    /// before it.
    ///
    /// # Errors
    /// [`PlanError::Cycle`] when the steps depend on each other in a cycle,
    /// [`PlanError::UnknownDependency`] when a resource depends on one the plan lacks.
    pub fn build(plan: &Plan) -> Result<ActionGraph, PlanError> {
        let mut graph = DiGraph::new();
        let mut nodes: HashMap<&ResourceAddress, Nodes> = HashMap::new();
        for (t, tenant) in plan.tenants.iter().enumerate() {
            for (c, change) in tenant.changes.iter().enumerate() {
                let mut add = |kind| {
                    Some(graph.add_node(Step {
                        tenant: t,
                        change: c,
                        kind,
                    }))
                };
                let mut n = Nodes {
                    action: Some(change.action),
                    ..Nodes::default()
                };
                match change.action {
                    Action::NoOp => {}
                    Action::Create => n.create = add(StepKind::Create),
                    Action::Update => n.update = add(StepKind::Update),
                    Action::Delete => n.delete = add(StepKind::Delete),
                    Action::Replace => {
                        n.delete = add(StepKind::Delete);
                        n.create = add(StepKind::Create);
                    }
                }
                nodes.insert(&change.address, n);
            }
        }

        let mut edges = Vec::new();
        for change in plan.changes() {
            let me = &nodes[&change.address];
            if let (Some(d), Some(c)) = (me.delete, me.create) {
                edges.push((d, c));
            }
            if let Some(ready) = me.ready() {
                let deps = change
                    .after
                    .as_ref()
                    .map(|r| r.depends_on.as_slice())
                    .unwrap_or(&[]);
                for dep in deps {
                    let Some(theirs) = nodes.get(dep) else {
                        return Err(PlanError::UnknownDependency {
                            address: change.address.clone(),
                            dependency: dep.clone(),
                        });
                    };
                    if let Some(their_ready) = theirs.ready() {
                        edges.push((their_ready, ready));
                    }
                }
            }
            for dep in &change.depends_on_before {
                let Some(theirs) = nodes.get(dep) else {
                    continue;
                };
                if let (Some(mine), Some(their_delete)) = (me.delete, theirs.delete) {
                    edges.push((mine, their_delete));
                }
                if let (Some(update), Some(their_delete), Some(Action::Delete)) =
                    (me.update, theirs.delete, theirs.action)
                {
                    edges.push((update, their_delete));
                }
            }
        }
        for (a, b) in edges {
            graph.update_edge(a, b, ());
        }

        let g = ActionGraph { graph };
        g.check_acyclic(plan)?;
        Ok(g)
    }

    fn check_acyclic(&self, plan: &Plan) -> Result<(), PlanError> {
        for scc in tarjan_scc(&self.graph) {
            let self_loop = scc.len() == 1 && self.graph.contains_edge(scc[0], scc[0]);
            if scc.len() > 1 || self_loop {
                let mut addresses: Vec<ResourceAddress> = Vec::new();
                for n in scc.iter().rev() {
                    let a = &self.graph[*n].change(plan).address;
                    if !addresses.contains(a) {
                        addresses.push(a.clone());
                    }
                }
                return Err(PlanError::Cycle(addresses));
            }
        }
        Ok(())
    }

    /// The number of steps.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    /// Whether the graph has no steps.
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// The steps that must finish before `n` starts.
    pub fn dependencies(&self, n: NodeIndex) -> impl Iterator<Item = NodeIndex> + '_ {
        self.graph.neighbors_directed(n, Direction::Incoming)
    }

    /// The steps waiting for `n`.
    pub fn dependents(&self, n: NodeIndex) -> impl Iterator<Item = NodeIndex> + '_ {
        self.graph.neighbors_directed(n, Direction::Outgoing)
    }
}
