//! Kopter's schema: the one source of every table, queue, topic and message
//! contract name in the system.
//!
//! Terraform (`deploy/terraform`), the local bootstrap (`kopterctl
//! bootstrap`) and every service read names and keys from here, and tests
//! check that the others agree with this crate. Nothing in this crate talks
//! to AWS; it is plain data so that anything can depend on it cheaply.
//!
//! See `DESIGN.md` next to this file for the key layout and why it is so.

pub mod ids;
pub mod items;
pub mod messages;
pub mod names;
pub mod queues;
pub mod tables;

pub use ids::{AccountId, IdError, TenantId};
pub use messages::{ContractError, Envelope, EventType, Message};
pub use names::{EnvName, Names};
pub use queues::{Service, Subscription};
pub use tables::{Gsi, KeyAttr, Projection, Table, TableSpec};
