//! A ready-queue over a dependency graph: which nodes may start now, and in what order.
//!
//! Two phases, two types. [`DependencyQueue`] collects nodes, each with a priority and
//! the nodes it depends on, in any order. [`DependencyQueue::seal`] checks what was
//! collected (no node twice, no unknown dependency, no cycle) and gives a
//! [`ReadyQueue`], which a walker drains: [`ReadyQueue::dequeue`] hands out a node whose
//! dependencies have all finished, and the walker reports back with
//! [`finish`](ReadyQueue::finish), [`fail`](ReadyQueue::fail) or, for a node it will not
//! run, [`skip`](ReadyQueue::skip).
//!
//! The queue knows nothing of what a node does; it only keeps the rules:
//!
//! - A node is handed out only after every one of its dependencies finished.
//! - Among the nodes that may start, the one with the least priority comes first;
//!   nodes of equal priority come in the order they were queued. The walk is therefore
//!   deterministic for a given order of `finish` calls.
//! - Every node is handed out at most once.
//! - A failed or skipped node takes every node that depends on it, directly or not,
//!   with it: they are skipped and never handed out. Nodes that do not depend on it
//!   are not affected.
//! - [`ReadyQueue::skip_rest`] skips whatever has not started, for a walk that stops.
//!
//! Cost: sealing sorts the nodes once (O(n log n)) and checks for cycles in O(n + e);
//! a node is handed out in O(log n), and `finish`, `fail` and `skip` touch only the
//! edges they cross, so a whole walk is O((n + e) log n), whatever the order of calls.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::hash::Hash;

/// Nodes being collected, with their priorities and dependencies.
pub struct DependencyQueue<N, P> {
    entries: Vec<(N, P, Vec<N>)>,
}

/// What is wrong with a collected graph.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError<N: fmt::Debug> {
    /// A node was queued twice.
    #[error("{0:?} is queued twice")]
    Duplicate(N),
    /// A node depends on one that was not queued.
    #[error("{node:?} depends on {dependency:?}, which is not queued")]
    UnknownDependency { node: N, dependency: N },
    /// The nodes of one cycle, each depending on the next, the last on the first.
    #[error("dependency cycle: {0:?}")]
    Cycle(Vec<N>),
}

impl<N, P> Default for DependencyQueue<N, P> {
    fn default() -> Self {
        DependencyQueue {
            entries: Vec::new(),
        }
    }
}

impl<N, P> DependencyQueue<N, P>
where
    N: Clone + Eq + Hash + fmt::Debug,
    P: Ord,
{
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty queue with room for `nodes` nodes.
    pub fn with_capacity(nodes: usize) -> Self {
        DependencyQueue {
            entries: Vec::with_capacity(nodes),
        }
    }

    /// Adds `node`, which may start once every node of `deps` finished. A dependency
    /// may be queued before or after its dependent; one named twice counts once.
    pub fn queue(&mut self, node: N, priority: P, deps: impl IntoIterator<Item = N>) {
        self.entries
            .push((node, priority, deps.into_iter().collect()));
    }

    /// Checks the graph and readies the nodes that depend on nothing.
    pub fn seal(mut self) -> Result<ReadyQueue<N>, QueueError<N>> {
        // Rank = position in priority order (stable: ties keep the queueing order), so
        // that the ready heap compares plain integers.
        self.entries.sort_by(|a, b| a.1.cmp(&b.1));
        let n = self.entries.len();
        let mut index: HashMap<N, u32> = HashMap::with_capacity(n);
        for (rank, (node, _, _)) in self.entries.iter().enumerate() {
            match index.entry(node.clone()) {
                Entry::Occupied(_) => return Err(QueueError::Duplicate(node.clone())),
                Entry::Vacant(v) => {
                    v.insert(rank as u32);
                }
            }
        }
        let mut nodes = Vec::with_capacity(n);
        let mut dependencies: Vec<Vec<u32>> = Vec::with_capacity(n);
        for (node, _, deps) in self.entries {
            let mut ranks = Vec::with_capacity(deps.len());
            for dep in deps {
                match index.get(&dep) {
                    Some(r) => ranks.push(*r),
                    None => {
                        return Err(QueueError::UnknownDependency {
                            node,
                            dependency: dep,
                        });
                    }
                }
            }
            ranks.sort_unstable();
            ranks.dedup();
            nodes.push(node);
            dependencies.push(ranks);
        }
        let mut dependents: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (rank, deps) in dependencies.iter().enumerate() {
            for d in deps {
                dependents[*d as usize].push(rank as u32);
            }
        }
        let waiting: Vec<u32> = dependencies.iter().map(|d| d.len() as u32).collect();
        if let Some(cycle) = find_cycle(&dependencies, &dependents, &waiting) {
            return Err(QueueError::Cycle(
                cycle
                    .into_iter()
                    .map(|r| nodes[r as usize].clone())
                    .collect(),
            ));
        }
        let mut status = vec![Status::Waiting; n];
        let mut ready = BinaryHeap::new();
        for (rank, w) in waiting.iter().enumerate() {
            if *w == 0 {
                status[rank] = Status::Ready;
                ready.push(Reverse(rank as u32));
            }
        }
        Ok(ReadyQueue {
            nodes,
            index,
            dependents,
            waiting,
            status,
            ready,
            in_flight: 0,
        })
    }
}

/// Kahn's walk over the whole graph; what it cannot reach lies on or behind a cycle.
/// Returns one cycle, found by following unreached dependencies until one repeats.
fn find_cycle(
    dependencies: &[Vec<u32>],
    dependents: &[Vec<u32>],
    waiting: &[u32],
) -> Option<Vec<u32>> {
    let mut waiting = waiting.to_vec();
    let mut stack: Vec<u32> = (0..waiting.len() as u32)
        .filter(|r| waiting[*r as usize] == 0)
        .collect();
    let mut reached = vec![false; waiting.len()];
    while let Some(r) = stack.pop() {
        reached[r as usize] = true;
        for d in &dependents[r as usize] {
            waiting[*d as usize] -= 1;
            if waiting[*d as usize] == 0 {
                stack.push(*d);
            }
        }
    }
    let start = reached.iter().position(|r| !r)?;
    // Every unreached node has an unreached dependency, so this walk never ends on
    // its own: it runs until it meets a node it passed.
    let mut seen: HashMap<u32, usize> = HashMap::new();
    let mut path = Vec::new();
    let mut at = start as u32;
    loop {
        if let Some(i) = seen.get(&at) {
            return Some(path.split_off(*i));
        }
        seen.insert(at, path.len());
        path.push(at);
        at = *dependencies[at as usize]
            .iter()
            .find(|d| !reached[**d as usize])
            .expect("an unreached node has an unreached dependency");
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// A dependency has not finished.
    Waiting,
    /// May start; in the heap.
    Ready,
    /// Handed out, not yet reported back.
    InFlight,
    Finished,
    Failed,
    Skipped,
}

/// A sealed graph being walked.
#[derive(Debug)]
pub struct ReadyQueue<N> {
    /// By rank (priority order).
    nodes: Vec<N>,
    index: HashMap<N, u32>,
    dependents: Vec<Vec<u32>>,
    /// Dependencies not yet finished, per node.
    waiting: Vec<u32>,
    status: Vec<Status>,
    /// Ranks of ready nodes; a node skipped while in here is dropped when popped.
    ready: BinaryHeap<Reverse<u32>>,
    in_flight: usize,
}

impl<N> ReadyQueue<N>
where
    N: Clone + Eq + Hash + fmt::Debug,
{
    /// The ready node of least priority, now in flight; `None` when no node may start
    /// (nothing queued is ready, though nodes in flight may still unblock some).
    pub fn dequeue(&mut self) -> Option<N> {
        while let Some(Reverse(r)) = self.ready.pop() {
            let s = &mut self.status[r as usize];
            if *s == Status::Ready {
                *s = Status::InFlight;
                self.in_flight += 1;
                return Some(self.nodes[r as usize].clone());
            }
        }
        None
    }

    /// The node [`dequeue`](Self::dequeue) would hand out next, left in the queue (to
    /// skip it instead).
    pub fn peek(&mut self) -> Option<&N> {
        while let Some(Reverse(r)) = self.ready.peek() {
            if self.status[*r as usize] == Status::Ready {
                return Some(&self.nodes[*r as usize]);
            }
            self.ready.pop();
        }
        None
    }

    /// `node` finished; returns the nodes this made ready, in priority order.
    ///
    /// # Panics
    /// If `node` is not in flight: a walker reports each node it was handed once.
    pub fn finish(&mut self, node: &N) -> Vec<N> {
        let r = self.settle(node, Status::Finished);
        let mut unblocked = Vec::new();
        for d in &self.dependents[r] {
            let d = *d as usize;
            if self.status[d] != Status::Waiting {
                continue; // skipped behind another dependency
            }
            self.waiting[d] -= 1;
            if self.waiting[d] == 0 {
                self.status[d] = Status::Ready;
                self.ready.push(Reverse(d as u32));
                unblocked.push(d as u32);
            }
        }
        unblocked.sort_unstable();
        unblocked
            .into_iter()
            .map(|r| self.nodes[r as usize].clone())
            .collect()
    }

    /// `node` failed; skips every node that depends on it, and returns those, in
    /// priority order.
    ///
    /// # Panics
    /// If `node` is not in flight.
    pub fn fail(&mut self, node: &N) -> Vec<N> {
        let r = self.settle(node, Status::Failed);
        let mut skipped = Vec::new();
        for d in self.dependents[r].clone() {
            self.skip_rank(d, &mut skipped);
        }
        self.named(skipped)
    }

    /// Skips `node`, which has not started, and every node that depends on it; returns
    /// the nodes skipped by this call (`node` first, then the rest in priority order).
    /// A node skipped before is not skipped again.
    ///
    /// # Panics
    /// If `node` is not queued, or was handed out already.
    pub fn skip(&mut self, node: &N) -> Vec<N> {
        let r = self.rank(node);
        assert!(
            !matches!(
                self.status[r as usize],
                Status::InFlight | Status::Finished | Status::Failed
            ),
            "{node:?} was handed out, it cannot be skipped"
        );
        let mut skipped = Vec::new();
        self.skip_rank(r, &mut skipped);
        if skipped.is_empty() {
            return Vec::new();
        }
        let first = skipped.swap_remove(0);
        let mut out = vec![self.nodes[first as usize].clone()];
        out.extend(self.named(skipped));
        out
    }

    /// Skips every node that has not started (a walk that stops); returns them in
    /// priority order.
    pub fn skip_rest(&mut self) -> Vec<N> {
        let mut out = Vec::new();
        for (r, s) in self.status.iter_mut().enumerate() {
            if matches!(s, Status::Waiting | Status::Ready) {
                *s = Status::Skipped;
                out.push(self.nodes[r].clone());
            }
        }
        self.ready.clear();
        out
    }

    /// Nodes handed out and not yet reported back.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Every node, in priority order.
    pub fn nodes(&self) -> impl Iterator<Item = &N> {
        self.nodes.iter()
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn rank(&self, node: &N) -> u32 {
        *self
            .index
            .get(node)
            .unwrap_or_else(|| panic!("{node:?} is not queued"))
    }

    fn settle(&mut self, node: &N, to: Status) -> usize {
        let r = self.rank(node) as usize;
        assert_eq!(
            self.status[r],
            Status::InFlight,
            "{node:?} is reported back but is not in flight"
        );
        self.status[r] = to;
        self.in_flight -= 1;
        r
    }

    /// Skips `r` and what depends on it, depth first; appends the newly skipped ranks
    /// to `out`, `r` first.
    fn skip_rank(&mut self, r: u32, out: &mut Vec<u32>) {
        let mut stack = vec![r];
        while let Some(r) = stack.pop() {
            let s = &mut self.status[r as usize];
            // A dependent of a node that has not finished cannot have started; one
            // skipped already took its own dependents with it.
            if !matches!(s, Status::Waiting | Status::Ready) {
                continue;
            }
            *s = Status::Skipped;
            out.push(r);
            stack.extend(self.dependents[r as usize].iter().copied());
        }
    }

    fn named(&self, mut ranks: Vec<u32>) -> Vec<N> {
        ranks.sort_unstable();
        ranks
            .into_iter()
            .map(|r| self.nodes[r as usize].clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seals nodes given as `(name, priority, deps)`.
    fn sealed(nodes: &[(&'static str, u32, &[&'static str])]) -> ReadyQueue<&'static str> {
        let mut q = DependencyQueue::new();
        for (n, p, deps) in nodes {
            q.queue(*n, *p, deps.iter().copied());
        }
        q.seal().unwrap()
    }

    /// Dequeues everything ready now.
    fn drain_ready(q: &mut ReadyQueue<&'static str>) -> Vec<&'static str> {
        std::iter::from_fn(|| q.dequeue()).collect()
    }

    #[test]
    fn a_node_starts_only_after_all_its_dependencies_finished() {
        let mut q = sealed(&[("a", 0, &[]), ("b", 1, &[]), ("c", 2, &["a", "b"])]);
        assert_eq!(drain_ready(&mut q), ["a", "b"]);
        assert_eq!(q.finish(&"a"), Vec::<&str>::new(), "c still waits for b");
        assert_eq!(q.dequeue(), None);
        assert_eq!(q.finish(&"b"), ["c"]);
        assert_eq!(drain_ready(&mut q), ["c"]);
    }

    #[test]
    fn ready_nodes_come_in_priority_order_whatever_the_queueing_order() {
        let mut q = sealed(&[("c", 3, &[]), ("a", 1, &[]), ("b", 2, &[])]);
        assert_eq!(drain_ready(&mut q), ["a", "b", "c"]);
    }

    #[test]
    fn equal_priorities_keep_the_queueing_order() {
        let mut q = sealed(&[("x", 1, &[]), ("y", 1, &[]), ("w", 1, &[]), ("v", 0, &[])]);
        assert_eq!(drain_ready(&mut q), ["v", "x", "y", "w"]);
    }

    #[test]
    fn an_unblocked_node_waits_its_turn_behind_ready_nodes_of_lesser_priority() {
        // a unblocks d (priority 3), but b (1) and c (2) were ready before and come first;
        // e (0) jumps ahead of them all.
        let mut q = sealed(&[
            ("a", 5, &[]),
            ("b", 1, &[]),
            ("c", 2, &[]),
            ("d", 3, &["a"]),
            ("e", 0, &["a"]),
        ]);
        assert_eq!(q.dequeue(), Some("b"));
        assert_eq!(q.dequeue(), Some("c"));
        assert_eq!(q.dequeue(), Some("a"));
        q.finish(&"b");
        assert_eq!(q.finish(&"a"), ["e", "d"], "unblocked, in priority order");
        assert_eq!(drain_ready(&mut q), ["e", "d"]);
    }

    #[test]
    fn a_dependency_may_be_queued_after_its_dependent_and_named_twice() {
        let mut q = DependencyQueue::new();
        q.queue("late", 0, ["early", "early"]);
        q.queue("early", 1, []);
        let mut q = q.seal().unwrap();
        assert_eq!(drain_ready(&mut q), ["early"]);
        assert_eq!(q.finish(&"early"), ["late"], "counted once");
    }

    #[test]
    fn a_failure_skips_every_transitive_dependent_and_nothing_else() {
        let mut q = sealed(&[
            ("a", 0, &[]),
            ("b", 1, &["a"]),
            ("c", 2, &["b"]),
            ("d", 3, &["a", "x"]),
            ("x", 4, &[]),
            ("y", 5, &["x"]),
        ]);
        assert_eq!(drain_ready(&mut q), ["a", "x"]);
        assert_eq!(q.fail(&"a"), ["b", "c", "d"]);
        assert_eq!(q.finish(&"x"), ["y"], "d is skipped, not unblocked");
        assert_eq!(drain_ready(&mut q), ["y"]);
        q.finish(&"y");
        assert_eq!(q.in_flight(), 0);
        assert_eq!(q.skip_rest(), Vec::<&str>::new(), "nothing left");
    }

    #[test]
    fn skip_takes_the_node_and_its_dependents_once() {
        let mut q = sealed(&[
            ("a", 0, &[]),
            ("b", 1, &["a"]),
            ("c", 2, &["a"]),
            ("d", 3, &["b", "c"]),
            ("e", 4, &[]),
        ]);
        assert_eq!(q.skip(&"b"), ["b", "d"]);
        assert_eq!(q.skip(&"d"), Vec::<&str>::new(), "skipped before");
        assert_eq!(q.skip(&"a"), ["a", "c"], "d is not reported twice");
        assert_eq!(
            drain_ready(&mut q),
            ["e"],
            "a skipped ready node is never handed out"
        );
    }

    #[test]
    fn skip_rest_takes_what_has_not_started_and_leaves_what_is_in_flight() {
        let mut q = sealed(&[("a", 0, &[]), ("b", 1, &[]), ("c", 2, &["a"])]);
        assert_eq!(q.dequeue(), Some("a"));
        assert_eq!(q.skip_rest(), ["b", "c"]);
        assert_eq!(q.in_flight(), 1);
        assert_eq!(q.finish(&"a"), Vec::<&str>::new(), "c was skipped");
        assert_eq!(q.dequeue(), None);
    }

    #[test]
    fn peek_shows_the_next_node_and_a_peeked_node_may_be_skipped() {
        let mut q = sealed(&[("a", 0, &[]), ("b", 1, &[]), ("c", 2, &["a"])]);
        assert_eq!(q.peek(), Some(&"a"));
        assert_eq!(q.peek(), Some(&"a"), "peek takes nothing");
        assert_eq!(q.skip(&"a"), ["a", "c"]);
        assert_eq!(q.peek(), Some(&"b"));
        assert_eq!(q.dequeue(), Some("b"));
        assert_eq!(q.peek(), None);
    }

    #[test]
    fn in_flight_counts_what_was_handed_out_and_not_reported() {
        let mut q = sealed(&[("a", 0, &[]), ("b", 1, &[]), ("c", 2, &[])]);
        q.dequeue();
        q.dequeue();
        assert_eq!(q.in_flight(), 2);
        q.finish(&"a");
        q.fail(&"b");
        assert_eq!(q.in_flight(), 0);
    }

    #[test]
    #[should_panic(expected = "is not in flight")]
    fn reporting_a_node_that_was_not_handed_out_is_a_bug() {
        let mut q = sealed(&[("a", 0, &[])]);
        q.finish(&"a");
    }

    #[test]
    fn nodes_are_listed_in_priority_order() {
        let q = sealed(&[("b", 2, &[]), ("a", 1, &["b"]), ("c", 1, &[])]);
        assert_eq!(q.nodes().copied().collect::<Vec<_>>(), ["a", "c", "b"]);
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn sealing_rejects_a_duplicate_an_unknown_dependency_and_a_cycle() {
        let mut q = DependencyQueue::new();
        q.queue("a", 0, []);
        q.queue("a", 1, []);
        assert_eq!(q.seal().unwrap_err(), QueueError::Duplicate("a"));

        let mut q = DependencyQueue::new();
        q.queue("a", 0, ["ghost"]);
        assert_eq!(
            q.seal().unwrap_err(),
            QueueError::UnknownDependency {
                node: "a",
                dependency: "ghost"
            }
        );

        // root -> a -> b -> c -> a, and d behind the cycle: the error names the cycle.
        let mut q = DependencyQueue::new();
        q.queue("root", 0, []);
        q.queue("a", 1, ["root", "c"]);
        q.queue("b", 2, ["a"]);
        q.queue("c", 3, ["b"]);
        q.queue("d", 4, ["c"]);
        let QueueError::Cycle(cycle) = q.seal().unwrap_err() else {
            panic!("a cycle")
        };
        let mut sorted = cycle.clone();
        sorted.sort();
        assert_eq!(sorted, ["a", "b", "c"], "{cycle:?}");

        let mut q = DependencyQueue::new();
        q.queue("self", 0, ["self"]);
        assert_eq!(q.seal().unwrap_err(), QueueError::Cycle(vec!["self"]));
    }

    /// A random DAG: node i may depend on any node before it; priorities shuffled.
    fn random_dag(rng: &mut fastrand::Rng, max_nodes: usize) -> Vec<(u32, u32, Vec<u32>)> {
        let n = rng.usize(1..=max_nodes) as u32;
        let density = rng.f64() * 0.3;
        let mut priorities: Vec<u32> = (0..n).collect();
        rng.shuffle(&mut priorities);
        let mut nodes: Vec<(u32, u32, Vec<u32>)> = (0..n)
            .map(|i| {
                let deps = (0..i).filter(|_| rng.f64() < density).collect();
                (i, priorities[i as usize], deps)
            })
            .collect();
        rng.shuffle(&mut nodes);
        nodes
    }

    /// The simple walk the queue must agree with: repeatedly take the least-priority
    /// node whose dependencies are all settled; it fails if it is in `failing`, is
    /// skipped if a dependency did not finish, and finishes otherwise. Returns the
    /// nodes it ran (not the skipped ones) in order, and every node's outcome.
    fn serial_walk(
        nodes: &[(u32, u32, Vec<u32>)],
        failing: &[u32],
    ) -> (Vec<u32>, HashMap<u32, Status>) {
        let mut ran = Vec::new();
        let mut outcome: HashMap<u32, Status> = HashMap::new();
        while outcome.len() < nodes.len() {
            let (n, _, deps) = nodes
                .iter()
                .filter(|(n, _, _)| !outcome.contains_key(n))
                .filter(|(_, _, deps)| deps.iter().all(|d| outcome.contains_key(d)))
                .min_by_key(|(_, p, _)| *p)
                .expect("a DAG always has a node whose dependencies are settled");
            let s = if deps.iter().any(|d| outcome[d] != Status::Finished) {
                Status::Skipped
            } else {
                ran.push(*n);
                if failing.contains(n) {
                    Status::Failed
                } else {
                    Status::Finished
                }
            };
            outcome.insert(*n, s);
        }
        (ran, outcome)
    }

    /// Over many random graphs, the queue driven like a parallel walker (random
    /// parallelism, nodes finishing in random order, random failures) hands out every
    /// node at most once, never before its dependencies finished, and ends with the same
    /// outcome per node as the simple serial walk. With parallelism 1 it runs the nodes
    /// in the serial walk's order exactly.
    #[test]
    fn random_graphs_walk_like_the_simple_serial_walk() {
        let mut rng = fastrand::Rng::with_seed(0x7e4a_4f0b);
        for graph in 0..500 {
            let nodes = random_dag(&mut rng, 40);
            let failing: Vec<u32> = nodes
                .iter()
                .filter(|_| rng.f64() < 0.1)
                .map(|(n, _, _)| *n)
                .collect();
            let parallelism = rng.usize(1..=8);
            let deps: HashMap<u32, &Vec<u32>> = nodes.iter().map(|(n, _, d)| (*n, d)).collect();

            let mut q = DependencyQueue::with_capacity(nodes.len());
            for (n, p, d) in &nodes {
                q.queue(*n, *p, d.iter().copied());
            }
            let mut q = q.seal().unwrap();
            let mut outcome: HashMap<u32, Status> = HashMap::new();
            let mut in_flight: Vec<u32> = Vec::new();
            let mut ran = Vec::new();
            loop {
                while in_flight.len() < parallelism {
                    let Some(n) = q.dequeue() else { break };
                    for d in deps[&n] {
                        assert_eq!(
                            outcome.get(d),
                            Some(&Status::Finished),
                            "graph {graph}: {n} started before its dependency {d} finished"
                        );
                    }
                    assert!(!outcome.contains_key(&n), "graph {graph}: {n} twice");
                    in_flight.push(n);
                    ran.push(n);
                }
                assert_eq!(q.in_flight(), in_flight.len());
                if in_flight.is_empty() {
                    break;
                }
                let n = in_flight.swap_remove(rng.usize(..in_flight.len()));
                if failing.contains(&n) {
                    outcome.insert(n, Status::Failed);
                    for s in q.fail(&n) {
                        assert!(outcome.insert(s, Status::Skipped).is_none());
                    }
                } else {
                    outcome.insert(n, Status::Finished);
                    q.finish(&n);
                }
            }
            assert!(q.skip_rest().is_empty(), "graph {graph}: nothing stranded");
            assert_eq!(
                outcome.len(),
                nodes.len(),
                "graph {graph}: every node settled"
            );
            let (serial_ran, serial_outcome) = serial_walk(&nodes, &failing);
            assert_eq!(outcome, serial_outcome, "graph {graph}");
            if parallelism == 1 {
                assert_eq!(ran, serial_ran, "graph {graph}: the serial order");
            }
        }
    }
}
