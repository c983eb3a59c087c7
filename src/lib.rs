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
//! Every task above is spawned on the daemon's one `TaskTracker` and stopped
//! through its `CancellationToken` (tokio-util): shutdown stops accepting,
//! commits every notebook's pending changes, then closes the connections and
//! waits for the tracker to drain. Every `git` subprocess (commits libgit2
//! cannot make, all of sync) runs through one runner, [`git::GitProgram`].
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
mod schedule;
pub mod sd_notify;
pub mod sync;
pub mod watch;
