//! Upstreams: the shared HTTP client, building a request for a target, the relay with failover
//! before the first byte, and the streaming body that observes what it relays.

pub mod body;
pub mod chatgpt;
pub mod client;
pub mod compaction;
mod h1;
mod h2;
pub mod passthrough;
pub mod relay;
pub mod socket;
pub mod turn_state;
pub mod websearch;
