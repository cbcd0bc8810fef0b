//! The gRPC service: handlers that convert the request, call one operation of
//! [`crate::ops`], and convert the answer back (conversions live in [`convert`]), the
//! server with its layers (authentication, answering only once durable), and TLS;
//! and the same views for in-process watchers such as the dashboard ([`snapshot`]).

pub mod auth;
pub mod auth_layer;
pub mod client_service;
pub mod client_views;
pub mod commit_layer;
pub mod convert;
#[cfg(test)]
mod lease_wait_tests;
pub mod server;
mod session;
pub mod snapshot;
pub mod tls;
pub mod worker_service;

pub use client_service::ClientApi;
pub use worker_service::WorkerApi;
