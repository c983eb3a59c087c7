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
//!  notify inotify loop ──raw events──> debouncer (100 ms) ──batches──> watch pump ──WatchEvent──> notebook
//!                                                                         │ adds/removes watches
//!                                                                         └──────────> inotify watcher
//! ```
//!
//! The pump owns the inotify watcher and the repository (for ignore checks),
//! filters every event, watches directories as they appear and reports the
//! files already inside them (the directory race), and turns lost events
//! (queue overflow, refused watches) into [`WatchEvent::Rescan`].

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use git2::{Repository, RepositoryOpenFlags};
use notify_debouncer_full::notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify_debouncer_full::notify::{
    self, Config, EventHandler, EventKind, RecommendedWatcher, RecursiveMode, Watcher, WatcherKind,
};
use notify_debouncer_full::{
    new_debouncer_opt, DebounceEventResult, DebouncedEvent, Debouncer, NoCache,
};
use parking_lot::Mutex;
use tokio::sync::mpsc::UnboundedSender;

use crate::filter::PathFilter;

/// How long a path must be quiet before the debouncer hands it on. Short on
/// purpose: the notebook runtime runs its own, longer quiet period.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// How often the debouncer thread looks for expired events (each tick is a
/// wake-up per notebook, even when idle).
const TICK: Duration = Duration::from_millis(50);

/// What the watcher tells its notebook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// Notebook-relative paths that may have changed (added, modified, deleted, renamed either side). Already filtered; never empty.
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
    /// notify or the debouncer could not start.
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
    /// Debounces raw events into batches for the pump; `None` once stopped.
    debouncer: Option<Debouncer<HandlerCapture, NoCache>>,
    /// Tells the pump to stop.
    pump_tx: mpsc::Sender<PumpMsg>,
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

        // The inotify watcher is created before the debouncer so that an
        // inotify_init failure (the common one: max_user_instances) happens
        // before the debouncer spawns its thread; notify-debouncer-full 0.7
        // leaks that thread when its watcher fails to start.
        let slot: HandlerSlot = Arc::new(Mutex::new(None));
        let inotify = RecommendedWatcher::new(
            ForwardingHandler(slot.clone()),
            Config::default().with_follow_symlinks(false),
        )
        .map_err(|source| init_error(&root, source))?;

        let (pump_tx, pump_rx) = mpsc::channel();
        let batch_tx = pump_tx.clone();
        PREPARED_SLOT.with(|prepared| *prepared.borrow_mut() = Some(slot));
        let debouncer = new_debouncer_opt::<_, HandlerCapture, NoCache>(
            DEBOUNCE,
            Some(TICK),
            // Trivial on purpose: a panic here would kill the debouncer thread silently.
            move |result: DebounceEventResult| {
                let _ = batch_tx.send(PumpMsg::Batch(result));
            },
            NoCache::new(),
            Config::default(),
        );
        PREPARED_SLOT.with(|prepared| prepared.borrow_mut().take());
        let debouncer = debouncer.map_err(|source| WatchError::Notify {
            path: root.clone(),
            source,
        })?;

        let watch_count = Arc::new(AtomicUsize::new(0));
        let mut pump = Pump {
            root: root.clone(),
            filter,
            repo,
            inotify,
            watched: BTreeSet::new(),
            watch_count: watch_count.clone(),
            tx,
        };
        let mut batch = Batch::default();
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
        pump.walk(&root, WalkMode::Initial, &mut batch);
        pump.publish_count();
        if !pump.send_batch(batch) {
            tracing::debug!(notebook = name, "watch events receiver closed during start");
        }

        let thread_name = format!("gitlockd watch {name}");
        let pump = thread::Builder::new()
            .name(thread_name)
            .spawn(move || pump.run(pump_rx))
            .map_err(|source| WatchError::Thread {
                path: root.clone(),
                source,
            })?;
        tracing::debug!(notebook = name, root = %root.display(), watches = watch_count.load(Ordering::Relaxed), "watching");
        Ok(NotebookWatcher {
            root,
            debouncer: Some(debouncer),
            pump_tx,
            pump: Some(pump),
            watch_count,
        })
    }

    /// Number of inotify watches (directories) this notebook holds now, shown in status.
    pub fn watch_count(&self) -> usize {
        self.watch_count.load(Ordering::Relaxed)
    }

    /// The notebook root this watcher covers.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stops the debouncer and the pump thread, waiting for both (at most a tick and one batch).
    pub fn stop(self) {
        // Drop does the work; this name makes the intent visible at call sites.
    }

    fn shutdown(&mut self) {
        if let Some(debouncer) = self.debouncer.take() {
            debouncer.stop();
        }
        let _ = self.pump_tx.send(PumpMsg::Stop);
        if let Some(pump) = self.pump.take() {
            let _ = pump.join();
        }
    }
}

impl Drop for NotebookWatcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What the pump thread receives.
enum PumpMsg {
    /// One debounced batch (or the debouncer's errors).
    Batch(DebounceEventResult),
    /// Stop now.
    Stop,
}

/// Where the debouncer's raw-event handler is parked until `HandlerCapture::new` fills it.
type HandlerSlot = Arc<Mutex<Option<Box<dyn EventHandler>>>>;

thread_local! {
    /// Hands the slot to `HandlerCapture::new`, which `new_debouncer_opt`
    /// calls synchronously on the thread that prepared it.
    static PREPARED_SLOT: RefCell<Option<HandlerSlot>> = const { RefCell::new(None) };
}

/// The inotify watcher's handler: forwards raw events to the debouncer's handler.
struct ForwardingHandler(HandlerSlot);

impl EventHandler for ForwardingHandler {
    fn handle_event(&mut self, event: notify::Result<notify::Event>) {
        if let Some(handler) = self.0.lock().as_mut() {
            handler.handle_event(event);
        }
    }
}

/// The `Watcher` the debouncer believes it owns. It holds no inotify instance:
/// it only captures the debouncer's raw-event handler into the slot fed by the
/// real inotify watcher, which the pump owns. Why: `Debouncer::watch` appends
/// every watched path to a `Vec` it scans linearly on each call (measured in a
/// debug build: 20,000 directories took 50 s through the debouncer against
/// 0.5 s directly), and `Debouncer::unwatch` forgets nothing when the kernel
/// already dropped the watch. That bookkeeping only serves the file-id cache,
/// which is `NoCache` on Linux.
#[derive(Debug)]
struct HandlerCapture;

impl Watcher for HandlerCapture {
    fn new<F: EventHandler>(event_handler: F, _config: Config) -> notify::Result<Self> {
        let slot = PREPARED_SLOT
            .with(|prepared| prepared.borrow_mut().take())
            .ok_or_else(|| notify::Error::generic("BUG: no prepared inotify watcher"))?;
        *slot.lock() = Some(Box::new(event_handler));
        Ok(HandlerCapture)
    }

    fn watch(&mut self, _path: &Path, _recursive_mode: RecursiveMode) -> notify::Result<()> {
        Err(notify::Error::generic(
            "BUG: watches are added on the pump's inotify watcher",
        ))
    }

    fn unwatch(&mut self, _path: &Path) -> notify::Result<()> {
        Err(notify::Error::generic(
            "BUG: watches are removed on the pump's inotify watcher",
        ))
    }

    fn kind() -> WatcherKind {
        WatcherKind::Inotify
    }
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

/// What one debounced batch amounts to, before it is sent.
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

/// The per-notebook thread that turns debounced batches into [`WatchEvent`]s.
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
    /// Where the notebook listens.
    tx: UnboundedSender<WatchEvent>,
}

impl Pump {
    fn run(mut self, rx: mpsc::Receiver<PumpMsg>) {
        while let Ok(PumpMsg::Batch(result)) = rx.recv() {
            let mut batch = Batch::default();
            match result {
                Ok(events) => self.handle_events(&events, &mut batch),
                Err(errors) => {
                    for event in errors_to_events(&errors) {
                        match event {
                            WatchEvent::Rescan { reason } => batch.rescan(reason),
                            WatchEvent::Error(error) => batch.error(error),
                            WatchEvent::Changed(_) => {}
                        }
                    }
                    // A refused or failed read may have hidden new directories.
                    if !batch.rescans.is_empty() {
                        self.repair(&mut batch);
                    }
                }
            }
            self.publish_count();
            if !self.send_batch(batch) {
                // Nobody listens any more: the notebook is gone.
                break;
            }
        }
        // Dropping `self` drops the inotify watcher, which closes the instance.
    }

    fn handle_events(&mut self, events: &[DebouncedEvent], batch: &mut Batch) {
        let mut appeared: Vec<PathBuf> = Vec::new();
        let mut forgotten: Vec<PathBuf> = Vec::new();
        let mut ignore_files_changed = false;
        let mut overflow = false;

        for event in events {
            if event.need_rescan() {
                overflow = true;
                continue;
            }
            let source_sides = match event.kind {
                // Close(Write) is the "write finished" signal; opens and reads are noise.
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => 0,
                EventKind::Access(_) => continue,
                EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                    event.paths.len()
                }
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => 1,
                _ => 0,
            };
            let said_folder = matches!(
                event.kind,
                EventKind::Create(notify::event::CreateKind::Folder)
                    | EventKind::Remove(notify::event::RemoveKind::Folder)
            );
            for (index, path) in event.paths.iter().enumerate() {
                if path == &self.root {
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
                let rel = rel.to_path_buf();
                // The source of a rename or a removal: its watches are gone
                // (notify drops them itself); keep our bookkeeping in step.
                let was_watched = index < source_sides && self.forget(path);
                if was_watched {
                    forgotten.push(path.clone());
                }
                if rel.file_name().is_some_and(|name| name == ".git") {
                    // `git init`/`clone` inside the notebook: a nested repository
                    // is not ours to watch (and `.git` itself never is).
                    if let Some(parent) = path.parent().filter(|p| *p != self.root) {
                        if parent.join(".git").exists() && self.forget(parent) {
                            tracing::debug!(dir = %parent.display(), "nested repository: unwatched");
                        }
                    }
                    continue;
                }
                let is_dir = fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
                if self.is_ignored(&rel, is_dir || was_watched || said_folder) {
                    continue;
                }
                if rel.file_name().is_some_and(|name| name == ".gitignore") {
                    ignore_files_changed = true;
                }
                if is_dir {
                    appeared.push(path.clone());
                }
                batch.changed.insert(rel);
            }
        }

        // A path forgotten above may exist again as a directory (removed and
        // recreated, or renamed onto itself); it must be watched again.
        for path in forgotten {
            if !appeared.contains(&path) && fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                let is_ignored = path
                    .strip_prefix(&self.root)
                    .map_or(true, |rel| self.is_ignored(rel, true));
                if !is_ignored {
                    appeared.push(path);
                }
            }
        }
        for dir in appeared {
            if self.is_nested_repo(&dir) {
                continue;
            }
            self.walk(&dir, WalkMode::Appeared, batch);
        }
        if ignore_files_changed {
            // Newly un-ignored directories need watches, and newly un-ignored
            // files exist without having produced an event.
            self.repair(batch);
            batch.rescan(
                "a .gitignore changed: files it no longer ignores produced no events".to_string(),
            );
        }
        if overflow {
            self.repair(batch);
            batch.rescan(overflow_reason(read_proc_limit("max_queued_events")));
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
                if self.is_ignored(rel, is_dir) {
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
    /// watch, and forgets watched directories that no longer exist.
    fn repair(&mut self, batch: &mut Batch) {
        let stale: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|dir| !fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()))
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
            let _ = self.inotify.unwatch(&path);
        }
        true
    }

    /// True when `rel` is excluded by the filter or ignored by git.
    fn is_ignored(&self, rel: &Path, is_dir: bool) -> bool {
        self.filter.is_excluded(rel) || git_ignores(&self.repo, rel, is_dir)
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

/// Whether git ignores `rel`. `is_dir` also tries the `dir/` form, because a
/// directory-only pattern (`node_modules/`) cannot match a directory that no
/// longer exists when libgit2 looks at it.
fn git_ignores(repo: &Repository, rel: &Path, is_dir: bool) -> bool {
    // An error (e.g. a path libgit2 cannot represent) counts as "not ignored":
    // reporting too much is harmless, dropping a change is not.
    if repo.is_path_ignored(rel).unwrap_or(false) {
        return true;
    }
    if !is_dir {
        return false;
    }
    let mut with_slash = OsString::from(rel.as_os_str());
    with_slash.push("/");
    repo.is_path_ignored(Path::new(&with_slash))
        .unwrap_or(false)
}

/// Maps errors the debouncer forwards from notify to what the notebook must do.
/// Anything that may have lost events asks for a rescan.
pub fn errors_to_events(errors: &[notify::Error]) -> Vec<WatchEvent> {
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
            notify::ErrorKind::PathNotFound
            | notify::ErrorKind::WatchNotFound
            | notify::ErrorKind::InvalidConfig(_) => {
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
    fn git_ignore_checks_cover_directory_patterns_and_vanished_paths() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        fs::write(dir.path().join(".gitignore"), "node_modules/\nbuild\n").unwrap();
        fs::create_dir_all(dir.path().join("node_modules/pkg")).unwrap();
        fs::create_dir_all(dir.path().join("build")).unwrap();
        fs::create_dir_all(dir.path().join("src")).unwrap();
        let ignored = |rel: &str, is_dir: bool| git_ignores(&repo, Path::new(rel), is_dir);
        // Existing directories: libgit2 stats them, so both forms work.
        assert!(ignored("node_modules", true));
        assert!(ignored("node_modules", false));
        assert!(ignored("build", true));
        assert!(
            ignored("node_modules/pkg/index.js", false),
            "below an ignored dir"
        );
        assert!(!ignored("src", true));
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
