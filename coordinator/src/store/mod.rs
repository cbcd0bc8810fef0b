//! Everything durable: the group commit that makes appends durable before answers,
//! append guards, the research log and the coordinator's journal, the results file,
//! metric spools, job logs, the text log, the workspace's layout and its lock; and the
//! live feed, where what is stored is also announced to watchers (not durable).

pub mod code_files;
pub mod durable;
pub mod group_commit;
pub mod job_metrics;
pub mod live_feed;
pub mod live_logs;
pub mod metric_batch;
pub mod metric_spool;
pub mod research_log;
pub mod results_file;
pub mod text_log;
pub mod workspace;
pub mod workspace_lock;
