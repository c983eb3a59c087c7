//! control socket
pub mod protocol;
pub mod server;
