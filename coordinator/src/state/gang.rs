//! The placement of a data-parallel job's ranks (a gang): which worker runs which
//! rank, each rank's lease, and where a gang fits. Pure data and functions; the
//! operations that start, renew and end a gang are [`crate::ops::gang`].

use expcluster_core::WorkerId;
use std::time::Instant;

/// The largest communicator id rank 0 may publish (an NCCL unique id is 128 bytes).
pub const MAX_RENDEZVOUS_BYTES: usize = 4096;

/// Where one rank of the current attempt runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GangRank {
    pub worker: WorkerId,
    pub local_rank: u32,
    pub local_world_size: u32,
    /// This rank's lease: renewed by its worker's heartbeats.
    pub deadline: Instant,
    /// The rank stopped because a peer was lost: its lease no longer says anything.
    pub peer_lost: bool,
}

/// The placement of the current attempt of a data-parallel job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gang {
    /// Indexed by rank.
    pub ranks: Vec<GangRank>,
    /// Rank 0's communicator id, once published.
    pub rendezvous: Option<Vec<u8>>,
}

impl Gang {
    /// Ranks numbered in the order of `assignment` (worker, ranks on it); rank 0 is
    /// on the first worker.
    pub fn new(assignment: &[(WorkerId, u32)], deadline: Instant) -> Self {
        let mut ranks = Vec::new();
        for (worker, count) in assignment {
            for local_rank in 0..*count {
                ranks.push(GangRank {
                    worker: worker.clone(),
                    local_rank,
                    local_world_size: *count,
                    deadline,
                    peer_lost: false,
                });
            }
        }
        Self {
            ranks,
            rendezvous: None,
        }
    }

    pub fn has_worker(&self, worker: &WorkerId) -> bool {
        self.ranks.iter().any(|rank| &rank.worker == worker)
    }

    /// The workers of the gang with how many ranks each runs.
    pub fn slots_by_worker(&self) -> Vec<(WorkerId, u32)> {
        let mut slots: Vec<(WorkerId, u32)> = Vec::new();
        for rank in &self.ranks {
            match slots.iter_mut().find(|(worker, _)| worker == &rank.worker) {
                Some((_, count)) => *count += 1,
                None => slots.push((rank.worker.clone(), 1)),
            }
        }
        slots
    }

    /// The first rank whose lease ran out, if any; a rank that reported a lost peer
    /// stopped on purpose and is not the one lost.
    pub fn lost_rank(&self, now: Instant) -> Option<usize> {
        self.ranks
            .iter()
            .position(|rank| !rank.peer_lost && rank.deadline <= now)
    }
}

/// Where a gang's ranks go: (worker, ranks there), rank 0 on the first worker.
pub type Assignment = Vec<(WorkerId, u32)>;

/// What a rank-0 publish or a rank-N wait got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RendezvousAnswer {
    Ready(Vec<u8>),
    NotYet,
}

/// Chooses where the ranks of a gang go: the asking worker first (it has free slots
/// now), then the other live workers with the most free slots, so the gang spans as
/// few nodes as possible. `None` when the free slots are too few.
pub fn place(
    ranks: u32,
    caller: (&WorkerId, u32),
    others: &[(WorkerId, u32)],
) -> Option<Vec<(WorkerId, u32)>> {
    let mut candidates: Vec<(WorkerId, u32)> = others
        .iter()
        .filter(|(worker, free)| *free > 0 && worker != caller.0)
        .cloned()
        .collect();
    candidates.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut assignment = Vec::new();
    let mut left = ranks;
    for (worker, free) in std::iter::once((caller.0.clone(), caller.1)).chain(candidates) {
        if left == 0 {
            break;
        }
        let take = free.min(left);
        if take > 0 {
            assignment.push((worker, take));
            left -= take;
        }
    }
    (left == 0).then_some(assignment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(name: &str) -> WorkerId {
        WorkerId(name.to_owned())
    }

    #[test]
    fn a_gang_fills_the_caller_first_then_the_emptiest_workers() {
        let placed = place(5, (&w("a"), 2), &[(w("b"), 1), (w("c"), 3), (w("a"), 9)]);
        assert_eq!(placed, Some(vec![(w("a"), 2), (w("c"), 3)]));
    }

    #[test]
    fn a_gang_is_never_placed_in_part() {
        assert_eq!(place(4, (&w("a"), 1), &[(w("b"), 2)]), None);
        assert_eq!(place(1, (&w("a"), 0), &[]), None);
    }

    #[test]
    fn ranks_are_numbered_worker_by_worker_with_local_ranks() {
        let now = Instant::now();
        let gang = Gang::new(&[(w("a"), 2), (w("b"), 1)], now);
        let summary: Vec<(String, u32, u32)> = gang
            .ranks
            .iter()
            .map(|r| (r.worker.0.clone(), r.local_rank, r.local_world_size))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("a".to_owned(), 0, 2),
                ("a".to_owned(), 1, 2),
                ("b".to_owned(), 0, 1)
            ]
        );
        assert_eq!(gang.slots_by_worker(), vec![(w("a"), 2), (w("b"), 1)]);
        assert_eq!(gang.lost_rank(now), Some(0));
    }
}
