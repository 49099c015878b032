//! HTTP handlers, one file per API surface. Handlers are thin: read, route, hand to the relay.

pub mod admin;
pub mod input;
pub mod models;
pub mod ops;
pub mod passthrough;
pub mod pool;
pub mod proxy;
pub mod ws;
mod ws_session;
