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
//!         ^                                  │
//!         └────── adds/removes watches ──────┘
//! ```
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

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use git2::{Repository, RepositoryOpenFlags};
use notify_debouncer_full::notify::event::{
    AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode,
};
use notify_debouncer_full::notify::{
    self, Config, Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher,
};
use tokio::sync::mpsc::UnboundedSender;

use crate::filter::PathFilter;

/// A batch closes this long after its first event, however busy the
/// notebook: a fixed window, not a trailing debounce, so a file written
/// continuously is still reported once per window. The notebook runs its own
/// quiet period on top.
const BATCH_WINDOW: Duration = Duration::from_millis(100);

/// What the watcher tells its notebook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// Notebook-relative paths that may have changed (added, modified, deleted, renamed either side). Already filtered; never empty.
    ///
    /// Sorted and deduplicated. A directory may appear: it stands for
    /// everything under it (for a vanished directory, deletions). The kind
    /// of change is not given because editors make kinds lie: re-derive it
    /// from the disk.
    Changed(Vec<PathBuf>),
    /// Events were or may have been lost: the notebook must compare its real status with HEAD.
    Rescan {
        /// Why, in words a user can act on.
        reason: String,
    },
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
    pump_tx: mpsc::Sender<PumpMsg>,
    /// Set on stop; the pump checks it between batches, so a backlog of
    /// queued events does not delay stopping.
    stopping: Arc<AtomicBool>,
    /// The pump thread, joined on stop.
    pump: Option<thread::JoinHandle<()>>,
    /// Directories watched now, kept up to date by the pump.
    watch_count: Arc<AtomicUsize>,
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
        tx: UnboundedSender<WatchEvent>,
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

        let (pump_tx, pump_rx) = mpsc::channel();
        let raw_tx = pump_tx.clone();
        let inotify = RecommendedWatcher::new(
            // Trivial on purpose: it runs on notify's inotify thread, which a
            // panic would kill silently.
            move |result: notify::Result<Event>| {
                let _ = raw_tx.send(PumpMsg::Raw(result));
            },
            // Only matters for recursive watches, which we never add; stated anyway.
            Config::default().with_follow_symlinks(false),
        )
        .map_err(|source| init_error(&root, source))?;

        let watch_count = Arc::new(AtomicUsize::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let mut pump = Pump {
            root: root.clone(),
            filter,
            repo,
            inotify,
            watched: BTreeSet::new(),
            watch_count: watch_count.clone(),
            stopping: stopping.clone(),
            tx,
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
                    reason: refusal_reason(&root, &err),
                    path: root,
                })
            }
        }
        let mut batch = Batch::default();
        pump.walk(&root, WalkMode::Initial, &mut batch);
        pump.publish_count();
        if !pump.send_batch(batch) {
            tracing::debug!(notebook = name, "watch events receiver closed during start");
        }

        let pump = thread::Builder::new()
            .name(format!("gitlockd watch {name}"))
            .spawn(move || pump.run(pump_rx))
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
        let _ = self.pump_tx.send(PumpMsg::Wake);
        if let Some(pump) = self.pump.take() {
            // The pump drops the inotify watcher on its way out.
            let _ = pump.join();
        }
    }
}

/// What the pump thread receives.
enum PumpMsg {
    /// One raw event (or error) from notify's inotify thread.
    Raw(notify::Result<Event>),
    /// Look at the stop flag; pending events are dropped (the notebook
    /// compares status with HEAD when it starts again).
    Wake,
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
    /// Reasons for a rescan, deduplicated.
    rescans: Vec<String>,
    /// Problems that lose no events.
    errors: Vec<String>,
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
}

/// The per-notebook thread that turns raw events into [`WatchEvent`]s.
struct Pump {
    /// The notebook root (canonical).
    root: PathBuf,
    /// Built-in and configured exclusions.
    filter: Arc<PathFilter>,
    /// The notebook's repository, for git's ignore rules (owned: `Repository` is !Sync).
    repo: Repository,
    /// The inotify watcher; dropping it closes the inotify instance.
    inotify: RecommendedWatcher,
    /// Absolute paths of the directories watched now. Ordered so that a
    /// directory's descendants follow it contiguously (`Path` orders by component).
    watched: BTreeSet<PathBuf>,
    /// Published `watched.len()`.
    watch_count: Arc<AtomicUsize>,
    /// Set when the watcher is stopped.
    stopping: Arc<AtomicBool>,
    /// Where the notebook listens.
    tx: UnboundedSender<WatchEvent>,
}

impl Pump {
    fn run(mut self, rx: mpsc::Receiver<PumpMsg>) {
        let mut events: Vec<Event> = Vec::new();
        let mut errors: Vec<notify::Error> = Vec::new();
        let stopping = self.stopping.clone();
        // Files the message into the batch; false when it is time to stop.
        let keep = |msg: PumpMsg, events: &mut Vec<Event>, errors: &mut Vec<notify::Error>| {
            match msg {
                PumpMsg::Raw(Ok(event)) if is_noise(&event) => {}
                PumpMsg::Raw(Ok(event)) => events.push(event),
                PumpMsg::Raw(Err(error)) => errors.push(error),
                PumpMsg::Wake => {}
            }
            !stopping.load(Ordering::Relaxed)
        };
        // Idle: block without a timeout, so a quiet notebook costs no wake-ups.
        while let Ok(first) = rx.recv() {
            if !keep(first, &mut events, &mut errors) {
                return;
            }
            if events.is_empty() && errors.is_empty() {
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
                        if !keep(msg, &mut events, &mut errors) {
                            return;
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
            let mut batch = Batch::default();
            self.handle_batch(
                std::mem::take(&mut events),
                std::mem::take(&mut errors),
                &mut batch,
            );
            self.publish_count();
            if !self.send_batch(batch) {
                // Nobody listens any more: the notebook is gone.
                return;
            }
        }
        // Dropping `self` drops the inotify watcher, which closes the instance.
    }

    fn handle_batch(&mut self, events: Vec<Event>, errors: Vec<notify::Error>, batch: &mut Batch) {
        let mut lost = false;
        for event in errors_to_events(&errors) {
            match event {
                WatchEvent::Rescan { reason } => {
                    lost = true;
                    batch.rescan(reason);
                }
                WatchEvent::Error(error) => batch.error(error),
                WatchEvent::Changed(_) => {}
            }
        }

        // First pass, in event order: forget the watches of directories that
        // moved away or vanished (notify drops them itself; keep our set in step).
        // Every path the batch mentions, and whether it was known to be a
        // directory (an event said so, or we watched it).
        let mut touched: BTreeMap<PathBuf, bool> = BTreeMap::new();
        let mut forgotten: Vec<PathBuf> = Vec::new();
        let mut overflow = false;
        for event in &events {
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
                *touched.entry(path.clone()).or_default() |= said_folder || was_watched;
            }
        }

        // Second pass, once per path: filter, report, find new directories.
        let mut appeared: Vec<PathBuf> = Vec::new();
        let mut ignore_rules_changed = false;
        for (path, was_dir) in touched {
            if path == self.root {
                if !self.root.is_dir() {
                    batch.rescan(format!(
                        "the notebook root {} was moved or deleted",
                        self.root.display()
                    ));
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
        if ignore_rules_changed || overflow || lost {
            self.repair(batch);
        }
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
                            batch.rescan(refusal_reason(&dir, &err));
                            // Every further watch would be refused the same way.
                            watching = false;
                            if !report_files {
                                return;
                            }
                        } else {
                            batch.error(format!("cannot watch {}: {err}", dir.display()));
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
                }
            }
        }
    }

    /// Re-walks the whole notebook for directories that lost or never got a
    /// watch, and forgets watched directories that no longer exist or are
    /// ignored now (their watches are better spent elsewhere).
    fn repair(&mut self, batch: &mut Batch) {
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
        self.walk(&root, WalkMode::Repair, batch);
    }

    /// Adds a non-recursive watch on `dir`. `force` re-adds one we believe we
    /// hold (cheap, and it heals any drift between our set and notify's).
    fn watch_dir(&mut self, dir: &Path, force: bool) -> WatchOutcome {
        if !force && self.watched.contains(dir) {
            return WatchOutcome::Watched;
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
        self.filter.is_excluded(rel) || git_ignores(&self.repo, rel, vanished_dir)
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

    /// Sends the batch's events; false when the receiver is gone.
    fn send_batch(&self, batch: Batch) -> bool {
        let mut events = Vec::new();
        if !batch.changed.is_empty() {
            events.push(WatchEvent::Changed(batch.changed.into_iter().collect()));
        }
        events.extend(
            batch
                .rescans
                .into_iter()
                .map(|reason| WatchEvent::Rescan { reason }),
        );
        events.extend(batch.errors.into_iter().map(WatchEvent::Error));
        events.into_iter().all(|event| self.tx.send(event).is_ok())
    }
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
