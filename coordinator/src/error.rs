//! The coordinator's one error type and its one mapping to gRPC status codes.

use tonic::{Code, Status};

/// How every answer refused for a workspace write (a full disk, a failed fsync)
/// begins, so a client can tell it from an unreachable coordinator (both are
/// UNAVAILABLE: retry later).
pub const CANNOT_WRITE_WORKSPACE: &str = "cannot write the workspace";

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("unknown worker {0}: register again")]
    UnknownWorker(String),
    #[error("unknown job {0}")]
    UnknownJob(String),
    #[error("job {job} attempt {attempt} is not current (superseded or finished): stop it")]
    StaleAttempt { job: String, attempt: u32 },
    #[error("job {job} attempt {attempt} is not leased to worker {worker}")]
    NotYourJob {
        job: String,
        attempt: u32,
        worker: String,
    },
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Conflict(String),
    #[error("cannot write the workspace ({0}); retry later once the disk problem is fixed")]
    Storage(String),
}

impl CoordinatorError {
    /// The refusal of a report about `attempt` of `job` from `worker`: not its slot
    /// (`held_elsewhere`: the attempt is current but leased to another worker), or an
    /// attempt that is over.
    pub fn refused_attempt(
        job: &impl std::fmt::Display,
        attempt: u32,
        worker: &impl std::fmt::Display,
        held_elsewhere: bool,
    ) -> Self {
        if held_elsewhere {
            CoordinatorError::NotYourJob {
                job: job.to_string(),
                attempt,
                worker: worker.to_string(),
            }
        } else {
            CoordinatorError::StaleAttempt {
                job: job.to_string(),
                attempt,
            }
        }
    }

    pub fn storage(err: impl std::fmt::Display) -> Self {
        CoordinatorError::Storage(err.to_string())
    }
}

impl From<CoordinatorError> for Status {
    fn from(err: CoordinatorError) -> Status {
        let code = match &err {
            CoordinatorError::UnknownWorker(_) | CoordinatorError::UnknownJob(_) => Code::NotFound,
            CoordinatorError::StaleAttempt { .. } => Code::FailedPrecondition,
            CoordinatorError::NotYourJob { .. } => Code::PermissionDenied,
            CoordinatorError::InvalidRequest(_) | CoordinatorError::Config(_) => {
                Code::InvalidArgument
            }
            CoordinatorError::Conflict(_) => Code::AlreadyExists,
            CoordinatorError::Storage(_) => Code::Unavailable,
        };
        Status::new(code, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storage_refusal_begins_as_clients_expect() {
        let message = CoordinatorError::Storage("disk full".into()).to_string();
        assert!(message.starts_with(CANNOT_WRITE_WORKSPACE), "{message}");
    }
}
