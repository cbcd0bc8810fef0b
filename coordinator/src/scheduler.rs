//! The scheduling decision, as a pure function of (queue, free slots, now).
//!
//! First come, first served: the queue is in submission order, and a job waiting out
//! a retry backoff is passed over (not blocking the jobs behind it).

use std::time::Instant;

/// A queued job as the scheduler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedJob<K> {
    pub key: K,
    pub not_before: Option<Instant>,
}

/// Picks up to `free_slots` jobs that may start at `now`, in queue order.
pub fn pick_jobs<K: Copy>(
    queue: impl IntoIterator<Item = QueuedJob<K>>,
    free_slots: usize,
    now: Instant,
) -> Vec<K> {
    queue
        .into_iter()
        .filter(|job| job.not_before.is_none_or(|at| at <= now))
        .take(free_slots)
        .map(|job| job.key)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    proptest! {
        #[test]
        fn picks_ready_jobs_in_order_up_to_the_free_slots(
            delays in proptest::collection::vec(proptest::option::of(0u64..10), 0..50),
            free in 0usize..20,
        ) {
            let now = Instant::now() + Duration::from_secs(5);
            let base = now - Duration::from_secs(5);
            let queue: Vec<QueuedJob<usize>> = delays.iter().enumerate()
                .map(|(key, d)| QueuedJob { key, not_before: d.map(|s| base + Duration::from_secs(s)) })
                .collect();
            let picked = pick_jobs(queue.clone(), free, now);
            let ready: Vec<usize> = queue.iter()
                .filter(|j| j.not_before.is_none_or(|at| at <= now)).map(|j| j.key).collect();
            prop_assert_eq!(picked.len(), free.min(ready.len()));
            prop_assert_eq!(&picked[..], &ready[..picked.len()]);
        }
    }
}
