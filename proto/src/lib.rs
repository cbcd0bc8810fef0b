//! The expcluster wire contract, `expcluster.v1`, generated from `proto/expcluster/v1`.
//!
//! Domain types live in `expcluster-core`; conversions happen at the service edges.

#![allow(clippy::all, clippy::pedantic, clippy::unwrap_used)]

pub mod v1 {
    tonic::include_proto!("expcluster.v1");
}

/// The protocol version this build speaks; checked on every RPC.
pub const PROTOCOL_VERSION: u32 = 1;

/// The metadata header that carries [`PROTOCOL_VERSION`].
pub const PROTOCOL_HEADER: &str = "x-expcluster-protocol";

/// Largest gRPC message either side accepts (uploads are chunked below this).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Largest piece of a live log a worker sends in one `AppendLog`.
pub const MAX_LOG_CHUNK_BYTES: usize = 64 * 1024;

/// The most of one log stream the coordinator keeps live while an attempt runs.
pub const MAX_LIVE_LOG_BYTES: u64 = 8 * 1024 * 1024;
