//! The control socket: wire types ([`protocol`], [`answers`], and
//! [`status_answer`], the `status` entry, which lives in [`crate::status`]
//! because notebooks build it), who may use it ([`trust`]),
//! binding and accepting ([`server`]), and each connection's service
//! (`connection`, `dispatch`, `outbox`).
pub mod answers;
mod connection;
mod dispatch;
mod outbox;
pub mod protocol;
pub mod server;
pub use crate::status as status_answer;
mod suggest;
pub mod trust;
