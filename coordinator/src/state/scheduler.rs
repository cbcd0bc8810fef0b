//! The scheduling decision, as a pure function of (queue, free slots, now).
//!
//! First come, first served: the queue is in submission order, and a job waiting out
//! a retry backoff is passed over (not blocking the jobs behind it).
//!
//! Data-parallel gangs get all their slots at once or none (see [`crate::ops::gang`]).
//! A gang that fits the live cluster but not its free slots *reserves*: nothing
//! behind it in the queue starts, so single-slot jobs cannot keep taking the slots it
//! waits for; it starts as soon as enough running jobs end. A gang larger than the
//! whole live cluster is passed over instead (it cannot start until more workers
//! join), so it never blocks the jobs behind it. Either way every job waits a bounded
//! time behind a gang, and since no gang holds slots while waiting, two gangs cannot
//! deadlock.

use crate::state::gang::place;
use expcluster_core::WorkerId;
use std::time::Instant;

/// A queued job as the scheduler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedJob<K> {
    pub key: K,
    pub not_before: Option<Instant>,
    /// Slots it needs at once (`resources.data_parallel`).
    pub ranks: u32,
}

/// The other live workers' free slots, and the slots of every live worker together.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub others_free: Vec<(WorkerId, u32)>,
    pub live_capacity: u32,
}

/// One scheduling decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick<K> {
    /// An ordinary job for the asking worker.
    Single(K),
    /// A gang: ranks in order of the (worker, ranks there) list; the asking worker
    /// comes first.
    Gang(K, Vec<(WorkerId, u32)>),
}

/// Picks the jobs that start now, in queue order, for `caller` with `caller_free`
/// free slots. `cluster` is consulted (once) only when a gang is met, so the common
/// case costs what it hands out, not the number of workers.
pub fn pick_jobs<K: Copy>(
    queue: impl IntoIterator<Item = QueuedJob<K>>,
    caller: &WorkerId,
    mut caller_free: u32,
    cluster: impl FnOnce() -> ClusterView,
    now: Instant,
) -> Vec<Pick<K>> {
    let mut picks = Vec::new();
    let mut cluster = Some(cluster);
    let mut view: Option<ClusterView> = None;
    for job in queue
        .into_iter()
        .filter(|job| job.not_before.is_none_or(|at| at <= now))
    {
        if caller_free == 0 {
            break;
        }
        if job.ranks <= 1 {
            picks.push(Pick::Single(job.key));
            caller_free -= 1;
            continue;
        }
        let view = view.get_or_insert_with(|| cluster.take().map(|f| f()).unwrap_or_default());
        match place(job.ranks, (caller, caller_free), &view.others_free) {
            Some(assignment) => {
                for (worker, taken) in &assignment {
                    if worker == caller {
                        caller_free -= taken;
                    } else if let Some((_, free)) =
                        view.others_free.iter_mut().find(|(w, _)| w == worker)
                    {
                        *free -= taken;
                    }
                }
                picks.push(Pick::Gang(job.key, assignment));
            }
            None if job.ranks <= view.live_capacity => break,
            None => continue,
        }
    }
    picks
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn w(name: &str) -> WorkerId {
        WorkerId(name.to_owned())
    }

    fn job(key: usize, ranks: u32) -> QueuedJob<usize> {
        QueuedJob {
            key,
            not_before: None,
            ranks,
        }
    }

    fn view(others: &[(&str, u32)], capacity: u32) -> ClusterView {
        ClusterView {
            others_free: others.iter().map(|(n, f)| (w(n), *f)).collect(),
            live_capacity: capacity,
        }
    }

    proptest! {
        #[test]
        fn picks_ready_jobs_in_order_up_to_the_free_slots(
            delays in proptest::collection::vec(proptest::option::of(0u64..10), 0..50),
            free in 0u32..20,
        ) {
            let now = Instant::now() + Duration::from_secs(5);
            let base = now - Duration::from_secs(5);
            let queue: Vec<QueuedJob<usize>> = delays.iter().enumerate()
                .map(|(key, d)| QueuedJob { key, not_before: d.map(|s| base + Duration::from_secs(s)), ranks: 1 })
                .collect();
            let picked = pick_jobs(queue.clone(), &w("a"), free, ClusterView::default, now);
            let ready: Vec<Pick<usize>> = queue.iter()
                .filter(|j| j.not_before.is_none_or(|at| at <= now)).map(|j| Pick::Single(j.key)).collect();
            prop_assert_eq!(picked.len(), (free as usize).min(ready.len()));
            prop_assert_eq!(&picked[..], &ready[..picked.len()]);
        }

        /// However the queue and the free slots look, a gang gets all its ranks or
        /// none, and no worker is given more than its free slots.
        #[test]
        fn gangs_are_placed_whole_within_the_free_slots(
            sizes in proptest::collection::vec(1u32..6, 0..20),
            caller_free in 0u32..6,
            others in proptest::collection::vec(0u32..5, 0..4),
        ) {
            let queue: Vec<_> = sizes.iter().enumerate().map(|(k, r)| job(k, *r)).collect();
            let names: Vec<String> = (0..others.len()).map(|i| format!("o{i}")).collect();
            let others_free: Vec<(&str, u32)> = names.iter().map(String::as_str).zip(others.iter().copied()).collect();
            let capacity = caller_free + others.iter().sum::<u32>();
            let picks = pick_jobs(queue, &w("a"), caller_free, || view(&others_free, capacity), Instant::now());
            let mut used: std::collections::HashMap<WorkerId, u32> = Default::default();
            for pick in &picks {
                match pick {
                    Pick::Single(_) => *used.entry(w("a")).or_default() += 1,
                    Pick::Gang(key, assignment) => {
                        prop_assert_eq!(assignment.iter().map(|(_, n)| n).sum::<u32>(), sizes[*key]);
                        for (worker, n) in assignment { *used.entry(worker.clone()).or_default() += n; }
                    }
                }
            }
            prop_assert!(used.get(&w("a")).copied().unwrap_or(0) <= caller_free);
            for (name, free) in &others_free {
                prop_assert!(used.get(&w(name)).copied().unwrap_or(0) <= *free);
            }
        }
    }

    #[test]
    fn a_gang_that_fits_the_cluster_but_not_its_free_slots_holds_back_the_jobs_behind_it() {
        let queue = vec![job(0, 1), job(1, 3), job(2, 1)];
        let picks = pick_jobs(queue, &w("a"), 2, || view(&[], 4), Instant::now());
        assert_eq!(picks, vec![Pick::Single(0)]);
    }

    #[test]
    fn a_gang_larger_than_the_live_cluster_lets_the_jobs_behind_it_run() {
        let queue = vec![job(0, 8), job(1, 1), job(2, 1)];
        let picks = pick_jobs(queue, &w("a"), 2, || view(&[("b", 1)], 3), Instant::now());
        assert_eq!(picks, vec![Pick::Single(1), Pick::Single(2)]);
    }

    #[test]
    fn a_gang_spans_workers_and_two_gangs_share_the_cluster_without_deadlock() {
        let queue = vec![job(0, 2), job(1, 2)];
        let picks = pick_jobs(
            queue,
            &w("a"),
            1,
            || view(&[("b", 2), ("c", 1)], 4),
            Instant::now(),
        );
        assert_eq!(picks, vec![Pick::Gang(0, vec![(w("a"), 1), (w("b"), 1)]),]);
        // The second gang fits the remaining slots (b:1, c:1) but the caller has none
        // left: it is placed by the next worker that asks, not held half-placed here.
        let picks = pick_jobs(
            vec![job(1, 2)],
            &w("b"),
            1,
            || view(&[("c", 1)], 4),
            Instant::now(),
        );
        assert_eq!(picks, vec![Pick::Gang(1, vec![(w("b"), 1), (w("c"), 1)])]);
    }

    #[test]
    fn the_cluster_is_not_consulted_without_a_gang() {
        let queue = vec![job(0, 1), job(1, 1)];
        let picks = pick_jobs(queue, &w("a"), 5, || panic!("not needed"), Instant::now());
        assert_eq!(picks.len(), 2);
    }
}
