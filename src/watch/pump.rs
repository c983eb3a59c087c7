//! The event pump thread: collects raw inotify events into 100 ms batches,
//! filters them, and hands them to the notebook without ever blocking.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::TrySendError as TrySendErrorStd;
use std::sync::{mpsc, Arc};
use std::time::{Instant, SystemTime};

use git2::Repository;
use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode};
use notify::{Event, EventKind, RecommendedWatcher};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::Sender;

use crate::filter::PathFilter;
use crate::git::TrackedIgnored;

use super::limits::{errors_to_events, overflow_reason, read_proc_limit, root_gone_reason};
use super::tree::WalkMode;
use super::{WatchEvent, BATCH_WINDOW, MAX_HELD_PATHS, RAW_QUEUE};

/// The callback on notify's inotify thread. Trivial on purpose: a panic
/// there would kill that thread silently. It never blocks: a full queue
/// drops the event and flags it (flag first, then a wake-up that is either
/// queued or redundant, since the pump has messages to read and looks at the
/// flag when it closes their batch).
pub(super) fn raw_forwarder(
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
pub(super) enum PumpMsg {
    /// One raw event (or error) from notify's inotify thread, with when it arrived there.
    Raw(Instant, notify::Result<Event>),
    /// Look at the stop flag; pending events are dropped (the notebook
    /// compares status with HEAD when it starts again).
    Wake,
    /// Try again to watch every folder (after a watch limit refused some).
    Retry,
}

/// What one batch of raw events amounts to, before it is sent.
#[derive(Default)]
pub(super) struct Batch {
    /// Notebook-relative paths to report.
    pub(super) changed: BTreeSet<PathBuf>,
    /// When the latest raw event behind `changed` was received.
    pub(super) last_at: Option<Instant>,
    /// Reasons for a rescan, deduplicated.
    pub(super) rescans: Vec<String>,
    /// Problems that lose no events.
    pub(super) errors: Vec<String>,
    /// A watch limit refused a folder during this batch: why.
    pub(super) degraded: Option<String>,
    /// A full re-walk found every folder watchable again.
    pub(super) restored: bool,
}

impl Batch {
    pub(super) fn rescan(&mut self, reason: String) {
        if !self.rescans.contains(&reason) {
            self.rescans.push(reason);
        }
    }

    pub(super) fn error(&mut self, error: String) {
        if !self.errors.contains(&error) {
            self.errors.push(error);
        }
    }

    /// Notes a reported event's receipt time.
    pub(super) fn saw(&mut self, at: Instant) {
        self.last_at = Some(self.last_at.map_or(at, |t| t.max(at)));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.changed.is_empty()
            && self.rescans.is_empty()
            && self.errors.is_empty()
            && self.degraded.is_none()
            && !self.restored
    }

    /// Folds a later batch into this one, keeping the order of meaning:
    /// a later `Restored` cancels an earlier `Degraded` and vice versa.
    pub(super) fn merge(&mut self, later: Batch) {
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
    pub(super) fn put_back(&mut self, event: WatchEvent) {
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
    pub(super) fn into_events(self) -> Vec<WatchEvent> {
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
pub(super) struct Pump {
    /// The notebook root (canonical).
    pub(super) root: PathBuf,
    /// Built-in and configured exclusions.
    pub(super) filter: Arc<PathFilter>,
    /// The notebook's repository, for git's ignore rules (owned: `Repository` is !Sync).
    pub(super) repo: Repository,
    /// Ignored paths that are tracked all the same: their changes are
    /// committed (as `git add -A` does), so they are watched and reported.
    pub(super) tracked_ignored: RefCell<TrackedIgnored>,
    /// The inotify watcher; dropping it closes the inotify instance.
    pub(super) inotify: RecommendedWatcher,
    /// Absolute paths of the directories watched now. Ordered so that a
    /// directory's descendants follow it contiguously (`Path` orders by component).
    pub(super) watched: BTreeSet<PathBuf>,
    /// Published `watched.len()`.
    pub(super) watch_count: Arc<AtomicUsize>,
    /// Set when the watcher is stopped.
    pub(super) stopping: Arc<AtomicBool>,
    /// Set by notify's thread when the raw queue was full and an event was dropped.
    pub(super) raw_dropped: Arc<AtomicBool>,
    /// Where the notebook listens.
    pub(super) tx: Sender<WatchEvent>,
    /// What the notebook's full queue could not take yet.
    pub(super) held: Batch,
    /// Some folder has no watch because a limit (or a permission) refused it.
    pub(super) degraded: bool,
    /// The last refusal was the watch limit: re-walking for every new
    /// folder would be wasted (and costly on big trees) until a retry.
    pub(super) limit_reached: bool,
    /// `GITLOCKD_WATCH_LIMIT`: the most watches this notebook may add.
    pub(super) watch_limit: Option<usize>,
}

impl Pump {
    pub(super) fn run(mut self, rx: mpsc::Receiver<PumpMsg>) {
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
    pub(super) fn handle_batch(
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

    /// Offers the batch, with whatever the notebook's full queue refused
    /// before, without ever blocking (the notebook stops its watcher from
    /// the task that reads the queue). False when the receiver is gone.
    pub(super) fn deliver(&mut self, batch: Batch) -> bool {
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

/// The monotonic time of a file's mtime: now, less how long ago the wall
/// clock says it was. `None` for an mtime in the future (a clock step, a
/// `touch -d`): it says nothing about when the file was written.
pub(super) fn instant_of(mtime: SystemTime) -> Option<Instant> {
    let age = SystemTime::now().duration_since(mtime).ok()?;
    Instant::now().checked_sub(age)
}

/// Events that say nothing about content: opens and reads (every `git status`,
/// grep or backup run makes them). `Close(Write)` stays: a write finished.
pub(super) fn is_noise(event: &Event) -> bool {
    matches!(event.kind, EventKind::Access(kind) if kind != AccessKind::Close(AccessMode::Write))
}
