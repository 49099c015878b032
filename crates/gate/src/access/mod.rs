//! Who is asking, and whether the gateway will listen: the Host/Origin guard against DNS
//! rebinding and cross-site requests ([`origin`]), client and admin keys ([`keys`], checked by
//! [`auth`]), and each key's limits ([`limits`]).

pub mod admit;
pub mod auth;
pub mod keys;
pub mod limits;
pub mod manage;
pub mod origin;

pub use auth::{admin, client, Caller};
pub use origin::guard;
