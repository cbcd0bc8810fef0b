//! A worker's identity and resources when Slurm started it.
//!
//! Slurm describes the task it started in `SLURM_*` variables: the job (and array
//! task), the task's rank (`SLURM_PROCID`), its rank on the node (`SLURM_LOCALID`),
//! the node's index in the allocation (`SLURM_NODEID`), the GPUs it was given
//! (`CUDA_VISIBLE_DEVICES`, or only a count in `SLURM_GPUS_ON_NODE`) and how often the
//! batch job was requeued (`SLURM_RESTART_COUNT`). A requeued job reruns from the top
//! with the same job id, so the restart count is part of the incarnation: a worker
//! back under the same job id is a new worker and reuses nothing of the old one.
//!
//! Everything here is a pure function of a variable lookup, so it is tested without
//! touching the process environment.

/// What Slurm told this task about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmTask {
    /// `SLURM_JOB_ID` (for an array task, its own job id).
    pub job_id: String,
    /// `SLURM_ARRAY_JOB_ID`_`SLURM_ARRAY_TASK_ID` when part of an array.
    pub array_task: Option<String>,
    pub procid: u32,
    pub localid: u32,
    pub nodeid: u32,
    /// `SLURM_RESTART_COUNT`: 0 on the first run, +1 per requeue.
    pub restart_count: u32,
    /// The GPUs this task may use, as CUDA indices.
    pub gpus: Vec<String>,
}

impl SlurmTask {
    /// Reads the current process environment; `None` outside a Slurm job.
    pub fn from_env() -> Option<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup`; `None` when `SLURM_JOB_ID` is unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let job_id = lookup("SLURM_JOB_ID")
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())?;
        let number = |name: &str| {
            lookup(name)
                .and_then(|v| v.trim().parse::<u32>().ok())
                .unwrap_or(0)
        };
        let array_task = match (lookup("SLURM_ARRAY_JOB_ID"), lookup("SLURM_ARRAY_TASK_ID")) {
            (Some(array), Some(task)) if !array.trim().is_empty() => {
                Some(format!("{}_{}", array.trim(), task.trim()))
            }
            _ => None,
        };
        Some(Self {
            job_id,
            array_task,
            procid: number("SLURM_PROCID"),
            localid: number("SLURM_LOCALID"),
            nodeid: number("SLURM_NODEID"),
            restart_count: number("SLURM_RESTART_COUNT"),
            gpus: gpus_from(&lookup),
        })
    }

    /// The incarnation hint sent at registration: unique per (job, task, restart), so
    /// a requeued worker never passes for the one before it.
    pub fn incarnation_hint(&self) -> String {
        format!(
            "slurm:{}:{}:node{}:task{}:restart{}",
            self.job_id,
            self.array_task.as_deref().unwrap_or("-"),
            self.nodeid,
            self.procid,
            self.restart_count
        )
    }

    /// A scratch folder name of this incarnation (under the node's temp dir).
    pub fn work_dir_name(&self) -> String {
        format!(
            "expcluster-slurm-{}-task{}-r{}",
            self.job_id, self.procid, self.restart_count
        )
    }
}

/// `CUDA_VISIBLE_DEVICES` when Slurm (or the user) set it; otherwise indices
/// `0..SLURM_GPUS_ON_NODE`, which is all a node without GPU binding says.
fn gpus_from(lookup: &impl Fn(&str) -> Option<String>) -> Vec<String> {
    if let Some(visible) = lookup("CUDA_VISIBLE_DEVICES") {
        let listed: Vec<String> = visible
            .split(',')
            .map(str::trim)
            // Slurm sets "NoDevFiles" when a GPU job landed on a node without GPU files.
            .filter(|v| !v.is_empty() && *v != "NoDevFiles")
            .map(String::from)
            .collect();
        if !listed.is_empty() {
            return listed;
        }
    }
    let count = lookup("SLURM_GPUS_ON_NODE")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0);
    (0..count).map(|index| index.to_string()).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn task(vars: &[(&str, &str)]) -> Option<SlurmTask> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        SlurmTask::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn outside_slurm_there_is_no_task() {
        assert_eq!(task(&[("CUDA_VISIBLE_DEVICES", "0")]), None);
        assert_eq!(task(&[("SLURM_JOB_ID", " ")]), None);
    }

    #[test]
    fn reads_identity_and_gpus() {
        let found = task(&[
            ("SLURM_JOB_ID", "42"),
            ("SLURM_PROCID", "3"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_NODEID", "2"),
            ("SLURM_RESTART_COUNT", "1"),
            ("CUDA_VISIBLE_DEVICES", "2,3"),
            ("SLURM_GPUS_ON_NODE", "2"),
        ])
        .unwrap();
        assert_eq!(
            (
                found.procid,
                found.localid,
                found.nodeid,
                found.restart_count
            ),
            (3, 1, 2, 1)
        );
        assert_eq!(found.gpus, vec!["2", "3"]);
        assert_eq!(found.incarnation_hint(), "slurm:42:-:node2:task3:restart1");
    }

    #[test]
    fn gpu_count_without_visible_devices_gives_indices() {
        let found = task(&[("SLURM_JOB_ID", "7"), ("SLURM_GPUS_ON_NODE", "3")]).unwrap();
        assert_eq!(found.gpus, vec!["0", "1", "2"]);
        let none = task(&[
            ("SLURM_JOB_ID", "7"),
            ("CUDA_VISIBLE_DEVICES", "NoDevFiles"),
        ])
        .unwrap();
        assert!(none.gpus.is_empty());
    }

    #[test]
    fn a_requeued_task_is_a_new_incarnation() {
        let first = task(&[
            ("SLURM_JOB_ID", "9"),
            ("SLURM_ARRAY_JOB_ID", "8"),
            ("SLURM_ARRAY_TASK_ID", "1"),
        ])
        .unwrap();
        let again = task(&[
            ("SLURM_JOB_ID", "9"),
            ("SLURM_ARRAY_JOB_ID", "8"),
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_RESTART_COUNT", "1"),
        ])
        .unwrap();
        assert_eq!(first.array_task.as_deref(), Some("8_1"));
        assert_ne!(first.incarnation_hint(), again.incarnation_hint());
        assert_ne!(first.work_dir_name(), again.work_dir_name());
        // Garbage counts read as zero rather than failing the worker.
        assert_eq!(
            task(&[("SLURM_JOB_ID", "9"), ("SLURM_PROCID", "x")])
                .unwrap()
                .procid,
            0
        );
    }
}
