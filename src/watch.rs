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

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::TrySendError as TrySendErrorStd;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use git2::{Repository, RepositoryOpenFlags};
use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode};
use notify::{Config, Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::Sender;

use crate::filter::PathFilter;
use crate::git::TrackedIgnored;

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
        let repo = Repository::open_ext(&root, RepositoryOpenFlags::NO_SEARCH, [""; 0]).map_err(
            |source| WatchError::Repository {
                path: root.clone(),
                source,
            },
        )?;

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

/// The callback on notify's inotify thread. Trivial on purpose: a panic
/// there would kill that thread silently. It never blocks: a full queue
/// drops the event and flags it (flag first, then a wake-up that is either
/// queued or redundant, since the pump has messages to read and looks at the
/// flag when it closes their batch).
fn raw_forwarder(
    tx: mpsc::SyncSender<PumpMsg>,
    dropped: Arc<AtomicBool>,
) -> impl Fn(notify::Result<Event>) + Send + 'static {
    move |result| {
        // Stamped here, on arrival: a pump busy watching new folders reads
        // it later, and the quiet period must not start from then.
        if let Err(TrySendErrorStd::Full(_)) = tx.try_send(PumpMsg::Raw(Instant::now(), result)) {
            dropped.store(true, Ordering::SeqCst);
            let _ = tx.try_send(PumpMsg::Wake);
        }
    }
}

/// What the pump thread receives.
enum PumpMsg {
    /// One raw event (or error) from notify's inotify thread, with when it arrived there.
    Raw(Instant, notify::Result<Event>),
    /// Look at the stop flag; pending events are dropped (the notebook
    /// compares status with HEAD when it starts again).
    Wake,
    /// Try again to watch every folder (after a watch limit refused some).
    Retry,
}

/// How a directory walk behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WalkMode {
    /// At start: watch everything, report nothing (the notebook catches up itself).
    Initial,
    /// A directory appeared: watch it and everything below, report every file inside.
    Appeared,
    /// Ignore rules changed or events were lost: watch what is not watched yet, report nothing.
    Repair,
}

/// The result of asking inotify to watch one directory.
enum WatchOutcome {
    /// Watched (or already was).
    Watched,
    /// The directory is gone; its removal event will follow.
    Vanished,
    /// The kernel or notify refused.
    Refused(notify::Error),
}

/// What one batch of raw events amounts to, before it is sent.
#[derive(Default)]
struct Batch {
    /// Notebook-relative paths to report.
    changed: BTreeSet<PathBuf>,
    /// When the latest raw event behind `changed` was received.
    last_at: Option<Instant>,
    /// Reasons for a rescan, deduplicated.
    rescans: Vec<String>,
    /// Problems that lose no events.
    errors: Vec<String>,
    /// A watch limit refused a folder during this batch: why.
    degraded: Option<String>,
    /// A full re-walk found every folder watchable again.
    restored: bool,
}

impl Batch {
    fn rescan(&mut self, reason: String) {
        if !self.rescans.contains(&reason) {
            self.rescans.push(reason);
        }
    }

    fn error(&mut self, error: String) {
        if !self.errors.contains(&error) {
            self.errors.push(error);
        }
    }

    /// Notes a reported event's receipt time.
    fn saw(&mut self, at: Instant) {
        self.last_at = Some(self.last_at.map_or(at, |t| t.max(at)));
    }

    fn is_empty(&self) -> bool {
        self.changed.is_empty()
            && self.rescans.is_empty()
            && self.errors.is_empty()
            && self.degraded.is_none()
            && !self.restored
    }

    /// Folds a later batch into this one, keeping the order of meaning:
    /// a later `Restored` cancels an earlier `Degraded` and vice versa.
    fn merge(&mut self, later: Batch) {
        self.changed.extend(later.changed);
        if let Some(at) = later.last_at {
            self.saw(at);
        }
        for reason in later.rescans {
            self.rescan(reason);
        }
        for error in later.errors {
            self.error(error);
        }
        if later.degraded.is_some() {
            self.degraded = later.degraded;
            self.restored = false;
        } else if later.restored {
            self.degraded = None;
            self.restored = true;
        }
    }

    /// Takes an event the notebook's queue refused back into the batch.
    fn put_back(&mut self, event: WatchEvent) {
        match event {
            WatchEvent::Changed { paths, at } => {
                self.changed.extend(paths);
                self.saw(at);
            }
            WatchEvent::Rescan { reason } => self.rescan(reason),
            WatchEvent::Degraded { reason } => self.degraded = Some(reason),
            WatchEvent::Restored => self.restored = true,
            WatchEvent::Error(error) => self.error(error),
        }
    }

    /// The events, in the order the notebook must see them.
    fn into_events(self) -> Vec<WatchEvent> {
        let mut events = Vec::new();
        if !self.changed.is_empty() {
            events.push(WatchEvent::Changed {
                paths: self.changed.into_iter().collect(),
                // Paths found by a walk carry no event time: now.
                at: self.last_at.unwrap_or_else(Instant::now),
            });
        }
        events.extend(
            self.rescans
                .into_iter()
                .map(|reason| WatchEvent::Rescan { reason }),
        );
        if let Some(reason) = self.degraded {
            events.push(WatchEvent::Degraded { reason });
        } else if self.restored {
            events.push(WatchEvent::Restored);
        }
        events.extend(self.errors.into_iter().map(WatchEvent::Error));
        events
    }
}

/// The per-notebook thread that turns raw events into [`WatchEvent`]s.
struct Pump {
    /// The notebook root (canonical).
    root: PathBuf,
    /// Built-in and configured exclusions.
    filter: Arc<PathFilter>,
    /// The notebook's repository, for git's ignore rules (owned: `Repository` is !Sync).
    repo: Repository,
    /// Ignored paths that are tracked all the same: their changes are
    /// committed (as `git add -A` does), so they are watched and reported.
    tracked_ignored: RefCell<TrackedIgnored>,
    /// The inotify watcher; dropping it closes the inotify instance.
    inotify: RecommendedWatcher,
    /// Absolute paths of the directories watched now. Ordered so that a
    /// directory's descendants follow it contiguously (`Path` orders by component).
    watched: BTreeSet<PathBuf>,
    /// Published `watched.len()`.
    watch_count: Arc<AtomicUsize>,
    /// Set when the watcher is stopped.
    stopping: Arc<AtomicBool>,
    /// Set by notify's thread when the raw queue was full and an event was dropped.
    raw_dropped: Arc<AtomicBool>,
    /// Where the notebook listens.
    tx: Sender<WatchEvent>,
    /// What the notebook's full queue could not take yet.
    held: Batch,
    /// Some folder has no watch because a limit (or a permission) refused it.
    degraded: bool,
    /// The last refusal was the watch limit: re-walking for every new
    /// folder would be wasted (and costly on big trees) until a retry.
    limit_reached: bool,
    /// `GITLOCKD_WATCH_LIMIT`: the most watches this notebook may add.
    watch_limit: Option<usize>,
}

impl Pump {
    fn run(mut self, rx: mpsc::Receiver<PumpMsg>) {
        // Each with the time notify's thread received it (the quiet period starts there).
        let mut events: Vec<(Instant, Event)> = Vec::new();
        let mut errors: Vec<notify::Error> = Vec::new();
        let mut retry = false;
        let stopping = self.stopping.clone();
        // Files the message into the batch; false when it is time to stop.
        let keep = |msg: PumpMsg,
                    events: &mut Vec<(Instant, Event)>,
                    errors: &mut Vec<notify::Error>,
                    retry: &mut bool| {
            match msg {
                PumpMsg::Raw(_, Ok(event)) if is_noise(&event) => {}
                PumpMsg::Raw(at, Ok(event)) => events.push((at, event)),
                PumpMsg::Raw(_, Err(error)) => errors.push(error),
                PumpMsg::Wake => {}
                PumpMsg::Retry => *retry = true,
            }
            !stopping.load(Ordering::Relaxed)
        };
        loop {
            // Idle: block without a timeout, so a quiet notebook costs no
            // wake-ups; while the notebook's queue is full, offer what is
            // held once per window.
            let first = if self.held.is_empty() {
                match rx.recv() {
                    Ok(msg) => msg,
                    Err(_) => return,
                }
            } else {
                match rx.recv_timeout(BATCH_WINDOW) {
                    Ok(msg) => msg,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if !self.deliver(Batch::default()) {
                            return;
                        }
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            };
            if !keep(first, &mut events, &mut errors, &mut retry) {
                return;
            }
            let dropped = self.raw_dropped.load(Ordering::SeqCst);
            if events.is_empty() && errors.is_empty() && !retry && !dropped {
                // Only noise (opens, reads): no batch to time.
                continue;
            }
            let close_at = Instant::now() + BATCH_WINDOW;
            loop {
                let now = Instant::now();
                // Checked before receiving, so a flood cannot hold a batch open.
                if now >= close_at {
                    break;
                }
                match rx.recv_timeout(close_at - now) {
                    Ok(msg) => {
                        if !keep(msg, &mut events, &mut errors, &mut retry) {
                            return;
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
            let mut batch = Batch::default();
            // Swapped only now: a drop flagged during the window joins this batch.
            let dropped = self.raw_dropped.swap(false, Ordering::SeqCst);
            self.handle_batch(
                std::mem::take(&mut events),
                std::mem::take(&mut errors),
                dropped,
                std::mem::take(&mut retry),
                &mut batch,
            );
            self.publish_count();
            if !self.deliver(batch) {
                // Nobody listens any more: the notebook is gone.
                return;
            }
        }
        // Dropping `self` drops the inotify watcher, which closes the instance.
    }

    /// `dropped`: the raw queue was full and events were dropped; `retry`:
    /// re-walk the tree to win back watches a limit refused.
    fn handle_batch(
        &mut self,
        events: Vec<(Instant, Event)>,
        errors: Vec<notify::Error>,
        dropped: bool,
        retry: bool,
        batch: &mut Batch,
    ) {
        let mut lost = false;
        if dropped {
            lost = true;
            batch.rescan(format!(
                "gitlockd's event queue was full ({RAW_QUEUE} events waiting): \
                 events were dropped; too many changes at once"
            ));
        }
        for event in errors_to_events(&errors) {
            match event {
                WatchEvent::Rescan { reason } => {
                    lost = true;
                    batch.rescan(reason);
                }
                WatchEvent::Error(error) => batch.error(error),
                WatchEvent::Changed { .. } | WatchEvent::Degraded { .. } | WatchEvent::Restored => {
                }
            }
        }

        // First pass, in event order: forget the watches of directories that
        // moved away or vanished (notify drops them itself; keep our set in step).
        // Every path the batch mentions, and whether it was known to be a
        // directory (an event said so, or we watched it).
        let mut touched: BTreeMap<PathBuf, (bool, Instant)> = BTreeMap::new();
        let mut forgotten: Vec<PathBuf> = Vec::new();
        let mut overflow = false;
        for (at, event) in &events {
            if event.need_rescan() {
                overflow = true;
                continue;
            }
            let source_sides = match event.kind {
                EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                    event.paths.len()
                }
                // [from, to]
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => 1,
                _ => 0,
            };
            let said_folder = matches!(
                event.kind,
                EventKind::Create(CreateKind::Folder) | EventKind::Remove(RemoveKind::Folder)
            );
            for (index, path) in event.paths.iter().enumerate() {
                let was_watched = index < source_sides && self.forget(path);
                if was_watched {
                    forgotten.push(path.clone());
                }
                let entry = touched.entry(path.clone()).or_insert((false, *at));
                entry.0 |= said_folder || was_watched;
                entry.1 = entry.1.max(*at);
            }
        }

        // Second pass, once per path: filter, report, find new directories.
        let mut appeared: Vec<PathBuf> = Vec::new();
        let mut ignore_rules_changed = false;
        for (path, (was_dir, at)) in touched {
            if path == self.root {
                if !self.root.is_dir() {
                    // Every watch went with the folder; a folder restored
                    // there later is a new one, watched only by a retry.
                    let root = self.root.clone();
                    self.forget(&root);
                    self.degraded = true;
                    batch.degraded = Some(root_gone_reason(&root));
                }
                continue;
            }
            let Ok(rel) = path.strip_prefix(&self.root) else {
                continue;
            };
            if rel.file_name().is_some_and(|name| name == ".git") {
                // `git init`/`clone` inside the notebook: a nested repository
                // is not ours to watch (and `.git` itself never is).
                if let Some(parent) = path.parent().filter(|p| *p != self.root) {
                    if self.is_nested_repo(parent) && self.forget(parent) {
                        tracing::debug!(dir = %parent.display(), "nested repository: unwatched");
                    }
                }
                continue;
            }
            let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
            if self.is_ignored(rel, !is_dir && was_dir) {
                continue;
            }
            if rel.file_name().is_some_and(|name| name == ".gitignore") {
                ignore_rules_changed = true;
            }
            batch.changed.insert(rel.to_path_buf());
            batch.saw(at);
            if is_dir {
                appeared.push(path);
            }
        }

        // A path forgotten above may exist again as a directory (removed and
        // recreated, or renamed away and back): it must be watched again.
        for path in forgotten {
            if !appeared.contains(&path) && fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                let ignored = path
                    .strip_prefix(&self.root)
                    .map_or(true, |rel| self.is_ignored(rel, false));
                if !ignored {
                    appeared.push(path);
                }
            }
        }
        // While degraded, a folder that (re)appeared may be the one that
        // could not be watched (e.g. its permissions changed): look at once
        // whether everything is watchable now, rather than at the next retry.
        let recheck = self.degraded && !self.limit_reached && !appeared.is_empty();
        for dir in appeared {
            if !self.is_nested_repo(&dir) {
                self.walk(&dir, WalkMode::Appeared, batch);
            }
        }

        if ignore_rules_changed {
            batch.rescan(
                "a .gitignore changed: files it no longer ignores produced no events".to_string(),
            );
        }
        if overflow {
            batch.rescan(overflow_reason(read_proc_limit("max_queued_events")));
        }
        // Lost events may have hidden new directories; new ignore rules may
        // have un-ignored some. Either way, re-check the whole tree's watches.
        if ignore_rules_changed || overflow || lost || retry || recheck {
            self.repair(batch);
        }
        crate::fault::test_panic("pump", &batch.changed);
    }

    /// Watches `top` and every directory below it that is not ignored; in
    /// [`WalkMode::Appeared`] also reports every file found (files created
    /// before their directory was watched produced no event).
    fn walk(&mut self, top: &Path, mode: WalkMode, batch: &mut Batch) {
        let report_files = mode == WalkMode::Appeared;
        let mut watching = true;
        let mut stack = vec![top.to_path_buf()];
        while let Some(dir) = stack.pop() {
            if watching {
                // Watch first, list second: anything created after the listing
                // then produces an event, anything before is in the listing.
                match self.watch_dir(&dir, mode == WalkMode::Appeared) {
                    WatchOutcome::Watched => {}
                    WatchOutcome::Vanished => continue,
                    WatchOutcome::Refused(err) => {
                        let limit = matches!(err.kind, notify::ErrorKind::MaxFilesWatch);
                        if limit {
                            self.degraded = true;
                            self.limit_reached = true;
                            batch.degraded = Some(self.limit_reason(&dir, &err));
                            // Every further watch would be refused the same way.
                            watching = false;
                            if !report_files {
                                return;
                            }
                        } else {
                            // E.g. a folder gitlockd may not read: changes in it
                            // make no event, so rescan until a retry watches it.
                            self.degraded = true;
                            batch.degraded = Some(format!(
                                "cannot watch {}: {err}; until it can be watched (check its \
                                 permissions), changes in it are found by rescans",
                                dir.display()
                            ));
                            continue;
                        }
                    }
                }
            }
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => {
                    batch.error(format!("cannot list {}: {err}", dir.display()));
                    continue;
                }
            };
            for entry in entries.flatten() {
                if entry.file_name() == ".git" {
                    continue;
                }
                // file_type() does not follow symlinks: a link to a directory is a file here.
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if !is_dir && !report_files {
                    // Keeps the start cost per directory, not per file.
                    continue;
                }
                let path = entry.path();
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                if self.is_ignored(rel, false) {
                    continue;
                }
                if is_dir {
                    if !self.is_nested_repo(&path) {
                        stack.push(path);
                    }
                } else if report_files {
                    batch.changed.insert(rel.to_path_buf());
                    // It was written before its folder was watched, so no
                    // event says when: its mtime does. Without it the quiet
                    // period would run from the folder's creation (too
                    // early) or from this listing (a batching window late).
                    if let Some(at) = entry
                        .metadata()
                        .ok()
                        .and_then(|m| m.modified().ok())
                        .and_then(instant_of)
                    {
                        batch.saw(at);
                    }
                }
            }
        }
    }

    /// Why a watch on `dir` was refused, naming `GITLOCKD_WATCH_LIMIT` when
    /// that refused it rather than the kernel.
    fn limit_reason(&self, dir: &Path, err: &notify::Error) -> String {
        match self.watch_limit {
            Some(n) if self.watched.len() >= n => format!(
                "GITLOCKD_WATCH_LIMIT={n} (a test and diagnostic setting) refused a watch \
                 on {}; until it is lifted, changes in unwatched directories are found \
                 by rescans",
                dir.display()
            ),
            _ => refusal_reason(dir, err),
        }
    }

    /// Re-walks the whole notebook for directories that lost or never got a
    /// watch, and forgets watched directories that no longer exist or are
    /// ignored now (their watches are better spent elsewhere).
    fn repair(&mut self, batch: &mut Batch) {
        self.tracked_ignored.borrow_mut().refresh(true);
        let stale: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|dir| *dir != &self.root)
            .filter(|dir| {
                !fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir())
                    || dir
                        .strip_prefix(&self.root)
                        .map_or(true, |rel| self.is_ignored(rel, false))
                    || self.is_nested_repo(dir)
            })
            .cloned()
            .collect();
        for dir in stale {
            self.forget(&dir);
        }
        let root = self.root.clone();
        self.limit_reached = false;
        self.walk(&root, WalkMode::Repair, batch);
        if !self.watched.contains(&root) {
            self.degraded = true;
            batch.degraded = Some(root_gone_reason(&root));
        }
        if self.degraded && batch.degraded.is_none() {
            // A whole walk without a refusal: every folder is watched again.
            self.degraded = false;
            batch.restored = true;
        }
    }

    /// Adds a non-recursive watch on `dir`. `force` re-adds one we believe we
    /// hold (cheap, and it heals any drift between our set and notify's).
    fn watch_dir(&mut self, dir: &Path, force: bool) -> WatchOutcome {
        if !force && self.watched.contains(dir) {
            return WatchOutcome::Watched;
        }
        if !self.watched.contains(dir) && self.watch_limit.is_some_and(|n| self.watched.len() >= n)
        {
            let err = notify::Error::new(notify::ErrorKind::MaxFilesWatch).add_path(dir.into());
            return WatchOutcome::Refused(err);
        }
        match self.inotify.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.watched.insert(dir.to_path_buf());
                WatchOutcome::Watched
            }
            Err(err) => match &err.kind {
                notify::ErrorKind::PathNotFound => WatchOutcome::Vanished,
                notify::ErrorKind::Io(io) if io.kind() == io::ErrorKind::NotFound => {
                    WatchOutcome::Vanished
                }
                _ => WatchOutcome::Refused(err),
            },
        }
    }

    /// Forgets `dir` and every watched directory below it, removing their
    /// watches. Returns whether `dir` itself was watched.
    fn forget(&mut self, dir: &Path) -> bool {
        if !self.watched.contains(dir) {
            // Nothing below an unwatched directory is watched: walks descend
            // only through directories they watched.
            return false;
        }
        let below: Vec<PathBuf> = self
            .watched
            .range(dir.to_path_buf()..)
            .take_while(|p| p.starts_with(dir))
            .cloned()
            .collect();
        for path in below {
            self.watched.remove(&path);
            // notify usually dropped the watch already (the directory moved or
            // vanished) and answers WatchNotFound; nothing to do about it.
            if let Err(err) = self.inotify.unwatch(&path) {
                tracing::debug!(dir = %path.display(), error = %err, "unwatch");
            }
        }
        true
    }

    /// True when `rel` is excluded by the filter or ignored by git;
    /// `vanished_dir`: it was a directory and no longer exists.
    fn is_ignored(&self, rel: &Path, vanished_dir: bool) -> bool {
        self.filter.is_excluded(rel)
            || (git_ignores(&self.repo, rel, vanished_dir)
                && !self.tracked_ignored.borrow_mut().covers(rel))
    }

    /// A subdirectory holding `.git` (a directory, or a file for linked
    /// worktrees and submodules) belongs to another repository.
    fn is_nested_repo(&self, dir: &Path) -> bool {
        dir != self.root && fs::symlink_metadata(dir.join(".git")).is_ok()
    }

    fn publish_count(&self) {
        self.watch_count
            .store(self.watched.len(), Ordering::Relaxed);
    }

    /// Offers the batch, with whatever the notebook's full queue refused
    /// before, without ever blocking (the notebook stops its watcher from
    /// the task that reads the queue). False when the receiver is gone.
    fn deliver(&mut self, batch: Batch) -> bool {
        self.held.merge(batch);
        if self.held.changed.len() > MAX_HELD_PATHS {
            // A rescan finds them all again, at bounded memory.
            self.held.changed.clear();
            self.held.rescan(format!(
                "the notebook fell behind the watcher (more than {MAX_HELD_PATHS} \
                 changed paths waiting)"
            ));
        }
        let mut events = std::mem::take(&mut self.held).into_events().into_iter();
        while let Some(event) = events.next() {
            match self.tx.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(event)) => {
                    self.held.put_back(event);
                    events.for_each(|e| self.held.put_back(e));
                    return true;
                }
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        true
    }
}

/// `GITLOCKD_WATCH_LIMIT`: a cap on the watches each notebook adds, refused
/// beyond it exactly like the kernel's `max_user_watches` would. For tests
/// and diagnostics: it makes the limit path reproducible without sysctl.
fn watch_limit() -> Option<usize> {
    std::env::var("GITLOCKD_WATCH_LIMIT")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The monotonic time of a file's mtime: now, less how long ago the wall
/// clock says it was. `None` for an mtime in the future (a clock step, a
/// `touch -d`): it says nothing about when the file was written.
fn instant_of(mtime: SystemTime) -> Option<Instant> {
    let age = SystemTime::now().duration_since(mtime).ok()?;
    Instant::now().checked_sub(age)
}

/// Events that say nothing about content: opens and reads (every `git status`,
/// grep or backup run makes them). `Close(Write)` stays: a write finished.
fn is_noise(event: &Event) -> bool {
    matches!(event.kind, EventKind::Access(kind) if kind != AccessKind::Close(AccessMode::Write))
}

/// Whether git ignores `rel`. libgit2 stats an existing path to learn whether
/// it is a directory; for a directory that no longer exists, `vanished_dir`
/// also tries the `dir/` form, or a directory-only pattern (`node_modules/`)
/// would not match it. Never for files: a file named `build` is not ignored
/// by `build/`.
fn git_ignores(repo: &Repository, rel: &Path, vanished_dir: bool) -> bool {
    // An error (e.g. a path libgit2 cannot represent) counts as "not ignored":
    // reporting too much is harmless, dropping a change is not.
    if repo.is_path_ignored(rel).unwrap_or(false) {
        return true;
    }
    if !vanished_dir {
        return false;
    }
    let mut with_slash = OsString::from(rel.as_os_str());
    with_slash.push("/");
    repo.is_path_ignored(Path::new(&with_slash))
        .unwrap_or(false)
}

/// Maps errors notify reports from its inotify thread to what the notebook must do.
/// Anything that may have lost events asks for a rescan.
fn errors_to_events(errors: &[notify::Error]) -> Vec<WatchEvent> {
    let mut events: Vec<WatchEvent> = Vec::new();
    for err in errors {
        let event = match &err.kind {
            notify::ErrorKind::MaxFilesWatch => {
                let dir = err.paths.first().map_or_else(
                    || "a new directory".to_string(),
                    |p| p.display().to_string(),
                );
                WatchEvent::Rescan {
                    reason: max_watches_reason(&dir, read_proc_limit("max_user_watches")),
                }
            }
            // A failed read of the inotify descriptor loses whatever it held.
            notify::ErrorKind::Io(_) | notify::ErrorKind::Generic(_) => WatchEvent::Rescan {
                reason: format!("the file watcher failed, events may be lost: {err}"),
            },
            // Removing the watch of a folder that is already gone (the
            // kernel dropped it with the folder): expected, nothing is lost.
            notify::ErrorKind::WatchNotFound => {
                tracing::debug!(error = %err, "watch already gone");
                continue;
            }
            notify::ErrorKind::PathNotFound | notify::ErrorKind::InvalidConfig(_) => {
                WatchEvent::Error(format!("file watcher: {err}"))
            }
        };
        if !events.contains(&event) {
            events.push(event);
        }
    }
    events
}

/// Why nothing is watched after the notebook folder went away.
fn root_gone_reason(root: &Path) -> String {
    format!(
        "the notebook folder {} was moved or deleted; it is watched again once it is back",
        root.display()
    )
}

/// The reason for a refused watch on `dir`: the limit and its fix when it is the limit.
fn refusal_reason(dir: &Path, err: &notify::Error) -> String {
    match err.kind {
        notify::ErrorKind::MaxFilesWatch => max_watches_reason(
            &dir.display().to_string(),
            read_proc_limit("max_user_watches"),
        ),
        _ => format!("the kernel refused a watch on {}: {err}", dir.display()),
    }
}

/// The user-facing explanation of `fs.inotify.max_user_watches` being reached.
fn max_watches_reason(dir: &str, limit: Option<u64>) -> String {
    format!(
        "the kernel refused a watch on {dir}: inotify max_user_watches is {} \
         (read /proc/sys/fs/inotify/max_user_watches; the limit is per user and shared \
         with other programs); raise it with `sysctl fs.inotify.max_user_watches={}`; \
         until then changes in unwatched directories are found only by rescans",
        limit.map_or_else(|| "unknown".to_string(), |n| n.to_string()),
        suggest(limit, 524_288),
    )
}

/// The user-facing explanation of an inotify queue overflow.
fn overflow_reason(limit: Option<u64>) -> String {
    format!(
        "event queue overflow: the kernel dropped file events (fs.inotify.max_queued_events is {}); \
         too many changes at once",
        limit.map_or_else(|| "unknown".to_string(), |n| n.to_string()),
    )
}

/// Maps an inotify_init failure to a start error, naming the instance limit when that is it.
fn init_error(root: &Path, source: notify::Error) -> WatchError {
    let emfile = matches!(&source.kind, notify::ErrorKind::Io(io) if io.raw_os_error() == Some(libc::EMFILE));
    if emfile {
        let limit = read_proc_limit("max_user_instances");
        WatchError::TooManyInstances {
            path: root.to_path_buf(),
            limit: limit.map_or_else(|| "unknown".to_string(), |n| n.to_string()),
            suggested: suggest(limit, 512),
        }
    } else {
        WatchError::Notify {
            path: root.to_path_buf(),
            source,
        }
    }
}

/// A value worth raising a limit to: at least `floor`, and at least double the current one.
fn suggest(current: Option<u64>, floor: u64) -> u64 {
    current.map_or(floor, |n| floor.max(n.saturating_mul(2)))
}

/// Reads `/proc/sys/fs/inotify/<name>`.
fn read_proc_limit(name: &str) -> Option<u64> {
    fs::read_to_string(Path::new("/proc/sys/fs/inotify").join(name))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn max_files_error(dir: &str) -> notify::Error {
        notify::Error::new(notify::ErrorKind::MaxFilesWatch).add_path(PathBuf::from(dir))
    }

    #[test]
    fn max_files_watch_becomes_a_rescan_naming_the_limit_and_the_fix() {
        let events = errors_to_events(&[max_files_error("/nb/deep/dir")]);
        assert_eq!(events.len(), 1, "{events:?}");
        let WatchEvent::Rescan { reason } = &events[0] else {
            panic!("expected a rescan, got {events:?}");
        };
        for needle in [
            "/nb/deep/dir",
            "max_user_watches is ",
            "/proc/sys/fs/inotify/max_user_watches",
            "sysctl fs.inotify.max_user_watches=",
        ] {
            assert!(reason.contains(needle), "{needle:?} missing from {reason}");
        }
        if let Some(limit) = read_proc_limit("max_user_watches") {
            assert!(reason.contains(&format!("is {limit} ")), "{reason}");
        }
    }

    #[test]
    fn repeated_limit_errors_collapse_and_other_errors_map_by_loss() {
        let io = notify::Error::io(io::Error::other("read failed"));
        let gone = notify::Error::path_not_found().add_path(PathBuf::from("/nb/x"));
        let events =
            errors_to_events(&[max_files_error("/nb/a"), max_files_error("/nb/a"), io, gone]);
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(
            matches!(&events[1], WatchEvent::Rescan { reason } if reason.contains("read failed"))
        );
        assert!(matches!(&events[2], WatchEvent::Error(e) if e.contains("/nb/x")));
    }

    #[test]
    fn a_full_raw_queue_drops_and_flags_and_the_pump_rescans() {
        let (tx, rx) = mpsc::sync_channel(2);
        let dropped = Arc::new(AtomicBool::new(false));
        let forward = raw_forwarder(tx, dropped.clone());
        let event = || Ok(Event::new(EventKind::Create(CreateKind::File)));
        forward(event());
        forward(event());
        assert!(!dropped.load(Ordering::SeqCst));
        forward(event());
        assert!(
            dropped.load(Ordering::SeqCst),
            "the third event found the queue full"
        );
        assert_eq!(
            rx.try_iter().count(),
            2,
            "nothing beyond the bound is queued"
        );

        let (mut pump, _nb_rx, _dir) = test_pump(4);
        let mut batch = Batch::default();
        pump.handle_batch(Vec::new(), Vec::new(), true, false, &mut batch);
        assert!(
            batch
                .rescans
                .iter()
                .any(|r| r.contains("event queue was full")),
            "{:?}",
            batch.rescans
        );
    }

    #[test]
    fn a_full_notebook_queue_holds_batches_and_delivers_them_all() {
        let (mut pump, mut rx, _dir) = test_pump(1);
        let changed = |names: &[&str]| Batch {
            changed: names.iter().map(PathBuf::from).collect(),
            ..Batch::default()
        };
        assert!(pump.deliver(changed(&["a"])));
        // The queue (one slot) is full: held, and merged with what follows.
        assert!(pump.deliver(changed(&["b"])));
        assert!(pump.deliver(Batch {
            degraded: Some("limit".into()),
            ..changed(&["c", "b"])
        }));
        let paths = |event: WatchEvent| match event {
            WatchEvent::Changed { paths, .. } => paths,
            other => panic!("expected Changed, got {other:?}"),
        };
        assert_eq!(paths(rx.try_recv().unwrap()), vec![PathBuf::from("a")]);
        assert!(rx.try_recv().is_err());
        assert!(pump.deliver(Batch::default()));
        assert_eq!(
            paths(rx.try_recv().unwrap()),
            vec![PathBuf::from("b"), PathBuf::from("c")]
        );
        assert!(pump.deliver(Batch::default()));
        assert_eq!(
            rx.try_recv().unwrap(),
            WatchEvent::Degraded {
                reason: "limit".into()
            }
        );
        assert!(pump.held.is_empty());
        drop(rx);
        assert!(
            !pump.deliver(changed(&["d"])),
            "a closed queue ends the pump"
        );
    }

    /// A pump over a fresh repository, sending into a queue of `capacity`.
    fn test_pump(
        capacity: usize,
    ) -> (
        Pump,
        tokio::sync::mpsc::Receiver<WatchEvent>,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let repo = Repository::init(&root).unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(capacity);
        let inotify = RecommendedWatcher::new(|_| {}, Config::default()).unwrap();
        let tracked_ignored = RefCell::new(TrackedIgnored::new(&root, repo.path()));
        let pump = Pump {
            tracked_ignored,
            root,
            filter: Arc::new(PathFilter::default()),
            repo,
            inotify,
            watched: BTreeSet::new(),
            watch_count: Arc::new(AtomicUsize::new(0)),
            stopping: Arc::new(AtomicBool::new(false)),
            raw_dropped: Arc::new(AtomicBool::new(false)),
            tx,
            held: Batch::default(),
            degraded: false,
            limit_reached: false,
            watch_limit: None,
        };
        (pump, rx, dir)
    }

    #[test]
    fn a_file_found_by_a_walk_is_dated_by_its_mtime() {
        let (now_wall, now) = (SystemTime::now(), Instant::now());
        let at = instant_of(now_wall - Duration::from_secs(2)).unwrap();
        let age = now.saturating_duration_since(at);
        assert!(
            age >= Duration::from_millis(1990) && age <= Duration::from_millis(2500),
            "{age:?}"
        );
        assert_eq!(instant_of(now_wall + Duration::from_secs(60)), None);
    }

    #[test]
    fn a_watch_already_gone_is_not_a_problem() {
        let gone = notify::Error::watch_not_found().add_path(PathBuf::from("/nb/deleted"));
        assert_eq!(errors_to_events(&[gone]), Vec::new());
    }

    #[test]
    fn git_ignore_checks_cover_directory_patterns_and_vanished_paths() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        fs::write(dir.path().join(".gitignore"), "node_modules/\nbuild\n").unwrap();
        fs::create_dir_all(dir.path().join("node_modules/pkg")).unwrap();
        fs::create_dir_all(dir.path().join("build")).unwrap();
        fs::create_dir_all(dir.path().join("src")).unwrap();
        let ignored =
            |rel: &str, vanished_dir: bool| git_ignores(&repo, Path::new(rel), vanished_dir);
        // Existing directories: libgit2 stats them, the plain form suffices.
        assert!(ignored("node_modules", false));
        assert!(ignored("build", false));
        assert!(
            ignored("node_modules/pkg/index.js", false),
            "below an ignored dir"
        );
        assert!(!ignored("src", false));
        assert!(!ignored("src/a.md", false));
        fs::remove_dir_all(dir.path().join("node_modules")).unwrap();
        // Vanished: a `dir/` pattern only matches when told it was a directory.
        assert!(!repo.is_path_ignored("node_modules").unwrap());
        assert!(ignored("node_modules", true));
        assert!(ignored("node_modules/pkg/gone.js", false));
        // A plain pattern matches files and directories alike.
        assert!(ignored("build", false));
        assert!(ignored("deeper/build", false));
        // A *file* named like a directory-only pattern is not ignored.
        assert!(!ignored("node_modules", false));
    }

    #[test]
    fn watcher_can_live_in_async_state() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<NotebookWatcher>();
        send_sync::<WatchEvent>();
    }

    #[test]
    fn reasons_suggest_a_higher_limit() {
        assert!(max_watches_reason("/d", Some(8192)).contains("max_user_watches=524288"));
        assert!(max_watches_reason("/d", Some(600_000)).contains("max_user_watches=1200000"));
        assert!(max_watches_reason("/d", None).contains("is unknown"));
        assert!(overflow_reason(Some(16384)).starts_with("event queue overflow"));
    }

    #[test]
    fn emfile_at_init_names_the_instance_limit() {
        let err = init_error(
            Path::new("/nb"),
            notify::Error::io(io::Error::from_raw_os_error(libc::EMFILE)),
        );
        let text = err.to_string();
        assert!(matches!(err, WatchError::TooManyInstances { .. }), "{text}");
        assert!(
            text.contains("sysctl fs.inotify.max_user_instances="),
            "{text}"
        );
        let other = init_error(
            Path::new("/nb"),
            notify::Error::io(io::Error::from_raw_os_error(libc::ENOMEM)),
        );
        assert!(matches!(other, WatchError::Notify { .. }), "{other}");
    }
}
