//! Agreement of expcluster-stats with scipy.stats and numpy, plus property
//! tests. Each agreement test sends all its cases to one Python process.

mod cases;
mod python;
mod tolerance;

mod compare;
mod correction;
mod coverage;
mod descriptive;
mod effect_size;
mod intervals;
mod parametric;
mod power;
mod properties;
mod rank_tests;
mod sequential;
