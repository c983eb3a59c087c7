//! The per-notebook file watcher: ignore-aware, one inotify watch per directory.
//!
//! A recursive inotify watch costs one kernel watch per directory, including
//! `.git/objects/??` and every `node_modules/` below the notebook; users with
//! big trees run out of `fs.inotify.max_user_watches`. So the watcher walks
//! the notebook itself and adds a *non-recursive* watch on the root and on
//! every directory that git would not ignore, skipping `.git`, the
//! [`PathFilter`]'s exclusions, nested repositories and symlinks.
//!
//! Threads per notebook:
//!
//! ```text
//!  notify inotify loop ──raw events──> watch pump (100 ms batches) ──WatchEvent──> notebook
//!         ^              (RAW_QUEUE)         │                     (NOTEBOOK_QUEUE)
//!         └────── adds/removes watches ──────┘
//! ```
//!
//! Both queues are bounded and nobody blocks on them. A full raw queue drops
//! the event and flags it; the pump turns the flag into a rescan (as for a
//! kernel queue overflow). A full notebook queue makes the pump hold and
//! merge its batches until there is room. A watch limit that refuses folders
//! makes the notebook rescan on a timer until a retry watches them all.
//!
//! The pump owns the inotify watcher and the repository (for ignore checks),
//! filters every event, watches directories as they appear and reports the
//! files already inside them (the directory race), and turns lost events
//! (queue overflow, refused watches) into [`WatchEvent::Rescan`].
//!
//! Why no notify-debouncer-full: its debounce is trailing-edge per (path,
//! kind), so a file written more often than the timeout is never reported
//! until it goes quiet (a 20 ms writer went 20 s without an event at a
//! 100 ms timeout), which would defeat the notebook's `max_delay`; and
//! `Debouncer::watch` scans a list of every watched path on each call
//! (20,000 directories took 50 s in a debug build, against 0.5 s directly).
//! inotify already pairs renames (`Name(Both)`), and the notebook runs its
//! own quiet period, so a fixed batching window is all this layer needs.
//!
//! Parts: this file (the [`NotebookWatcher`] handle and its events), `pump`
//! (the event pump thread and its batches), `tree` (walks, and which folders
//! are watched), `limits` (inotify limits, `GITLOCKD_WATCH_LIMIT`, and the
//! messages that name the fix).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use notify::{Config, RecommendedWatcher, Watcher};
use tokio::sync::mpsc::Sender;

use crate::filter::PathFilter;
use crate::git::TrackedIgnored;

use limits::{init_error, watch_limit};
use pump::{raw_forwarder, Batch, Pump, PumpMsg};
use tree::{WalkMode, WatchOutcome};

mod limits;
mod pump;
#[cfg(test)]
mod tests;
mod tree;

/// A batch closes this long after its first event, however busy the
/// notebook: a fixed window, not a trailing debounce, so a file written
/// continuously is still reported once per window. The notebook runs its own
/// quiet period on top.
const BATCH_WINDOW: Duration = Duration::from_millis(100);

/// Raw events waiting for the pump, at most. A burst beyond it (a `git
/// checkout` of a huge tree while the pump is busy watching new folders) is
/// dropped, and the notebook rescans instead: memory stays bounded and no
/// change is lost, since a rescan compares the whole work tree with HEAD.
pub const RAW_QUEUE: usize = 4096;

/// [`WatchEvent`]s waiting for the notebook, at most. When full, the pump
/// keeps merging batches in hand (paths deduplicated) and delivers them as
/// soon as there is room; past [`MAX_HELD_PATHS`] it asks for a rescan instead.
pub const NOTEBOOK_QUEUE: usize = 64;

/// Paths the pump holds back for a slow notebook before it trades them for a rescan.
const MAX_HELD_PATHS: usize = 100_000;

/// What the watcher tells its notebook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// Notebook-relative paths that may have changed (added, modified, deleted, renamed either side). Already filtered; never empty.
    ///
    /// Sorted and deduplicated. A directory may appear: it stands for
    /// everything under it (for a vanished directory, deletions). The kind
    /// of change is not given because editors make kinds lie: re-derive it
    /// from the disk. `at` is when the last raw event behind these paths
    /// reached the watcher: the notebook's quiet period runs from there, not
    /// from the end of the batching window.
    Changed {
        /// The paths.
        paths: Vec<PathBuf>,
        /// When the last event among them was received.
        at: Instant,
    },
    /// Events were or may have been lost: the notebook must compare its real status with HEAD.
    Rescan {
        /// Why, in words a user can act on.
        reason: String,
    },
    /// Some folders have no watch (a watch limit was reached): the notebook
    /// must rescan now, and on a timer until [`WatchEvent::Restored`], since
    /// changes in those folders make no event. Sent again after each failed
    /// retry ([`NotebookWatcher::retry_watches`]).
    Degraded {
        /// Which limit, and how to raise it.
        reason: String,
    },
    /// Every folder is watched again after [`WatchEvent::Degraded`].
    Restored,
    /// A problem worth showing in status/logs that loses no events.
    Error(String),
}

/// Why a notebook could not be watched at all.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The notebook's work tree is missing or not a directory.
    #[error("cannot watch {path}: {source}")]
    RootMissing {
        /// The notebook root.
        path: PathBuf,
        /// What stat said.
        #[source]
        source: io::Error,
    },
    /// The work tree is not a git repository libgit2 can open (needed for ignore rules).
    #[error("cannot open the git repository at {path} to read its ignore rules")]
    Repository {
        /// The notebook root.
        path: PathBuf,
        /// libgit2's complaint.
        #[source]
        source: git2::Error,
    },
    /// inotify_init failed with EMFILE: too many inotify instances (one per notebook).
    #[error(
        "cannot create an inotify instance for {path}: the per-user limit is reached \
         (fs.inotify.max_user_instances is {limit}; each notebook uses one) or the process \
         is out of file descriptors; raise it with `sysctl fs.inotify.max_user_instances={suggested}`"
    )]
    TooManyInstances {
        /// The notebook root.
        path: PathBuf,
        /// The current limit, as read from /proc ("unknown" if unreadable).
        limit: String,
        /// A value to raise it to.
        suggested: u64,
    },
    /// The kernel refused even the watch on the notebook root.
    #[error("cannot watch {path}: {reason}")]
    RootRefused {
        /// The notebook root.
        path: PathBuf,
        /// The kernel's refusal, with the limit and the fix when it is one.
        reason: String,
    },
    /// notify could not start.
    #[error("cannot start the file watcher for {path}")]
    Notify {
        /// The notebook root.
        path: PathBuf,
        /// notify's error.
        #[source]
        source: notify::Error,
    },
    /// The pump thread could not be spawned.
    #[error("cannot spawn the watch thread for {path}")]
    Thread {
        /// The notebook root.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Watches one notebook's work tree; stops when dropped.
#[derive(Debug)]
pub struct NotebookWatcher {
    /// The notebook root being watched.
    root: PathBuf,
    /// Wakes the pump so that it sees `stopping`.
    pump_tx: mpsc::SyncSender<PumpMsg>,
    /// Set on stop; the pump checks it between batches, so a backlog of
    /// queued events does not delay stopping.
    stopping: Arc<AtomicBool>,
    /// The pump thread, joined on stop.
    pump: Option<thread::JoinHandle<()>>,
    /// Directories watched now, kept up to date by the pump.
    watch_count: Arc<AtomicUsize>,
    /// Set when the pump thread panicked: the panic's message.
    crash: Arc<parking_lot::Mutex<Option<String>>>,
}

impl NotebookWatcher {
    /// Starts watching `root` (canonical path of a notebook's work tree); `filter` decides exclusions.
    ///
    /// Blocks while it walks the tree (call it off the async executor). Returns
    /// once every directory is watched, so a change made afterwards is seen.
    /// When the kernel refuses a watch part-way, it returns `Ok` with the
    /// partial watch and sends a [`WatchEvent::Rescan`] explaining the limit.
    pub fn start(
        name: &str,
        root: &Path,
        filter: Arc<PathFilter>,
        tx: Sender<WatchEvent>,
    ) -> Result<NotebookWatcher, WatchError> {
        let root = root.to_path_buf();
        match fs::metadata(&root) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(WatchError::RootMissing {
                    path: root,
                    source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
                })
            }
            Err(source) => return Err(WatchError::RootMissing { path: root, source }),
        }
        // NO_SEARCH: the root must be the repository itself, never a parent of it.
        let repo = crate::git::open(&root).map_err(|source| WatchError::Repository {
            path: root.clone(),
            source,
        })?;

        let (pump_tx, pump_rx) = mpsc::sync_channel(RAW_QUEUE);
        let raw_tx = pump_tx.clone();
        let raw_dropped = Arc::new(AtomicBool::new(false));
        let dropped = raw_dropped.clone();
        let inotify = RecommendedWatcher::new(
            raw_forwarder(raw_tx, dropped),
            // Only matters for recursive watches, which we never add; stated anyway.
            Config::default().with_follow_symlinks(false),
        )
        .map_err(|source| init_error(&root, source))?;

        let watch_count = Arc::new(AtomicUsize::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let tracked_ignored = RefCell::new(TrackedIgnored::new(&root, repo.path()));
        let mut pump = Pump {
            root: root.clone(),
            filter,
            tracked_ignored,
            repo,
            inotify,
            watched: BTreeSet::new(),
            watch_count: watch_count.clone(),
            stopping: stopping.clone(),
            raw_dropped,
            tx,
            held: Batch::default(),
            degraded: false,
            limit_reached: false,
            watch_limit: watch_limit(),
        };
        match pump.watch_dir(&root, true) {
            WatchOutcome::Watched => {}
            WatchOutcome::Vanished => {
                return Err(WatchError::RootMissing {
                    path: root,
                    source: io::Error::new(io::ErrorKind::NotFound, "vanished while starting"),
                })
            }
            WatchOutcome::Refused(err) => {
                return Err(WatchError::RootRefused {
                    reason: pump.limit_reason(&root, &err),
                    path: root,
                })
            }
        }
        let mut batch = Batch::default();
        pump.walk(&root, WalkMode::Initial, &mut batch);
        pump.publish_count();
        if !pump.deliver(batch) {
            tracing::debug!(notebook = name, "watch events receiver closed during start");
        }

        let crash = Arc::new(parking_lot::Mutex::new(None));
        let crashed = crash.clone();
        let pump = thread::Builder::new()
            .name(format!("gitlockd watch {name}"))
            .spawn(move || {
                // A panic drops the pump, closing the notebook's queue: the
                // notebook sees that, reads the reason here and restarts it.
                let run = std::panic::AssertUnwindSafe(move || pump.run(pump_rx));
                if let Err(payload) = std::panic::catch_unwind(run) {
                    *crashed.lock() = Some(crate::fault::panic_message(payload));
                }
            })
            .map_err(|source| WatchError::Thread {
                path: root.clone(),
                source,
            })?;
        tracing::debug!(
            notebook = name,
            root = %root.display(),
            watches = watch_count.load(Ordering::Relaxed),
            "watching"
        );
        Ok(NotebookWatcher {
            root,
            pump_tx,
            stopping,
            pump: Some(pump),
            watch_count,
            crash,
        })
    }

    /// Number of inotify watches (directories) this notebook holds now, shown in status.
    pub fn watch_count(&self) -> usize {
        self.watch_count.load(Ordering::Relaxed)
    }

    /// The live counter behind [`Self::watch_count`], for a status that
    /// outlives this handle's borrow.
    pub fn watch_counter(&self) -> Arc<AtomicUsize> {
        self.watch_count.clone()
    }

    /// Why the pump thread died, when it panicked. Waits for the thread to
    /// end (it records the panic after its queue is already closed).
    pub fn into_crash_reason(mut self) -> Option<String> {
        if let Some(pump) = self.pump.take() {
            let _ = pump.join();
        }
        self.crash.lock().clone()
    }

    /// Asks the pump to try again to watch every folder, after
    /// [`WatchEvent::Degraded`]; it answers with `Restored` or `Degraded`.
    /// Dropped when the pump's queue is full: the caller retries on a timer.
    pub fn retry_watches(&self) {
        let _ = self.pump_tx.try_send(PumpMsg::Retry);
    }

    /// The notebook root this watcher covers.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stops the pump thread and closes the inotify instance, waiting for at most the batch in hand.
    pub fn stop(self) {
        // Drop does the work; the name makes the intent visible at call sites.
    }
}

impl Drop for NotebookWatcher {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        // A full queue needs no wake-up: the pump is reading it.
        let _ = self.pump_tx.try_send(PumpMsg::Wake);
        if let Some(pump) = self.pump.take() {
            // The pump drops the inotify watcher on its way out.
            let _ = pump.join();
        }
    }
}
