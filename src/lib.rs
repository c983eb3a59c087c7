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
//! reached through [`lock::git_lock_manager`]; the notebook loop and the
//! socket reach the repository only through [`git`] (never `git2` or the
//! crash marker directly).
//!
//! Module map:
//! - [`notebook`]: one notebook: start-up and API (`mod.rs`), the loop
//!   (`run.rs`), commit rounds (`round.rs`), status (`status.rs`), the sync
//!   timer (`sync_schedule.rs`), the pending set (`schedule.rs`).
//! - [`watch`]: the watcher handle (`mod.rs`), its pump thread (`pump.rs`),
//!   which folders are watched (`tree.rs`), inotify limits (`limits.rs`).
//! - [`git`]: every git operation (`GitManager`; `probe.rs` for the small
//!   probes and the crash marker); [`sync`]: fetch, integrate, push.
//! - [`lock`]: the shared lock; [`control`]: the socket server;
//!   [`client`] and [`cli`]: the CLI; [`daemon`]: start-up, signals, reload.
//! - [`status`]: the typed `status` entry, built by [`notebook`] and
//!   [`registry`], sent by [`control`], read by [`client`].
//! - [`config`], [`filter`], [`pause`], [`recovery`], [`registry`],
//!   [`logging`], [`sd_notify`]: configuration and small services.
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
pub mod status;
pub mod sync;
pub mod watch;
