//! The ChatGPT subscription pool: accounts with sealed tokens, selection in memory, refresh,
//! quota signals, cooldowns and failover.

pub mod auth;
pub mod catalog;
pub mod login;
pub mod quota;
pub mod rate;
pub mod refresh;
pub mod select;
pub mod shared;
pub mod state;
pub mod usage;

pub use state::{InFlight, NoAccount, PickRules, Pool, PoolSettings, Status};
