//! gitlockd: auto-commits every change in a user's notebooks (git repositories)
//! and owns the per-notebook lock that every other process shares over a socket.
//!
//! Task topology of the running daemon:
//!
//! ```text
//!  signals ─┐                         ┌─> notebook task (one per notebook) ──> spawn_blocking(GitManager)
//!  socket  ─┼─> daemon (control loop) ┤       ^ WatchEvent            ^ lock (shared with clients)
//!  reload  ─┘                         │   watch pump thread (notify, ignore-aware)
//!                                     └─> control server ─> connection tasks (one OwnerId each)
//! ```
//!
//! Every git operation on a notebook goes through its [`lock::NotebookLock`],
//! reached through [`lock::git_lock_manager`].
#![warn(clippy::unwrap_used)]

pub mod cli;
pub mod client;
pub mod config;
pub mod control;
pub mod daemon;
mod fault;
pub mod filter;
pub mod git;
pub mod lock;
pub mod logging;
pub mod notebook;
pub mod pause;
pub mod recovery;
pub mod registry;
pub mod sd_notify;
pub mod sync;
pub mod watch;
