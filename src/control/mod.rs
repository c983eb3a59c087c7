//! The control socket: wire types ([`protocol`], [`answers`], [`status_answer`]), who may use it ([`trust`]),
//! binding and accepting ([`server`]), and each connection's service
//! (`connection`, `dispatch`, `outbox`).
pub mod answers;
mod connection;
mod dispatch;
mod outbox;
pub mod protocol;
pub mod server;
pub mod status_answer;
mod suggest;
pub mod trust;
