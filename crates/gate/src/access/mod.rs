//! Who is asking, and whether the gateway will listen: the Host/Origin guard against DNS
//! rebinding and cross-site requests, and the loopback rule for the admin and model APIs.
//! (Client keys and their limits will live here too.)

pub mod origin;

pub use origin::{guard, loopback_only};
