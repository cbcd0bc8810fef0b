//! gRPC handlers: each converts the request, calls one method of the state, and
//! converts the answer back. Conversions live in [`convert`].

pub mod client_service;
pub mod client_views;
pub mod convert;
mod session;
pub mod worker_service;

pub use client_service::ClientApi;
pub use worker_service::WorkerApi;
