//! What a stage is made of and what it yields: aggregation of a finished stage run,
//! the result arrays, summaries and statistics, claims, and the idea's feedback and
//! versions. Expansion into jobs is `expcluster_core::expand`.

pub mod across_stages;
pub mod aggregate;
pub mod claims;
pub mod claims_text;
pub mod feedback;
pub mod idea;
pub mod idea_update;
pub mod looks;
pub mod results;
pub mod summary;
