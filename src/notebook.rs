//! One notebook's runtime: its pending changes, pause switch, repository
//! state, and the loop that turns file events into auto-commits.
//!
//! The loop owns no git object: each commit round waits for the notebook
//! lock in the FIFO queue (behind socket clients), takes the batch of pending
//! paths only once it holds the lock, and runs git on a blocking thread bound
//! to its owner. Anything that stops a round (a merge in progress, another
//! process's `index.lock`, a lock timeout, an error) puts the batch back, so
//! no change is ever dropped.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::sleep_until;

use crate::config::NotebookConfig;
use crate::filter::PathFilter;
use crate::git::{AutoCommitOptions, AutoCommitOutcome, GitError, GitManager};
use crate::lock::{git_lock_manager, with_owner, LockMode, NotebookLock, OwnerId};
use crate::watch::{NotebookWatcher, WatchEvent};

/// Something that happened in a notebook, for `subscribe`.
#[derive(Debug, Clone)]
pub enum NotebookEvent {
    /// A commit landed.
    Commit {
        /// The notebook's name.
        notebook: String,
        /// The new commit id.
        commit: String,
        /// The paths it changed.
        paths: Vec<String>,
    },
}

/// Why a notebook could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The repository could not be opened or created.
    #[error("notebook {name}: {source}")]
    Git {
        /// The notebook.
        name: String,
        /// What git said.
        #[source]
        source: GitError,
    },
    /// The `ignore` globs do not compile.
    #[error("notebook {name}: {source}")]
    Filter {
        /// The notebook.
        name: String,
        /// The bad glob.
        #[source]
        source: crate::filter::BadPattern,
    },
    /// The folder could not be created.
    #[error("notebook {name}: cannot create {path}: {source}")]
    Create {
        /// The notebook.
        name: String,
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A blocking start-up task died.
    #[error("notebook {name}: start-up task failed: {message}")]
    Task {
        /// The notebook.
        name: String,
        /// The panic or cancellation.
        message: String,
    },
}

/// The last commit gitlockd made, for status.
#[derive(Debug, Clone)]
struct LastCommit {
    id: String,
    files: usize,
    at: SystemTime,
}

/// What status shows beyond the lock: kept up to date by the loop.
#[derive(Debug, Default)]
struct Health {
    /// Repository state when a round last looked ("clean", "merge", ...).
    state: String,
    last_commit: Option<LastCommit>,
    last_error: Option<String>,
    skipped_large: Vec<(PathBuf, u64)>,
    /// Why the watcher asked for rescans, when it did.
    watch_problem: Option<String>,
}

/// Changes seen but not committed yet.
#[derive(Debug, Default)]
struct Pending {
    paths: BTreeSet<PathBuf>,
    /// The event stream lost something: compare the whole work tree with HEAD.
    rescan: bool,
    first_at: Option<Instant>,
    last_at: Option<Instant>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.paths.is_empty() && !self.rescan
    }

    fn touch(&mut self, now: Instant) {
        self.first_at.get_or_insert(now);
        self.last_at = Some(now);
    }
}

/// The batch a round commits.
struct Batch {
    paths: Vec<PathBuf>,
    rescan: bool,
}

/// State shared by the loop, the socket server and status.
struct Shared {
    name: String,
    config: NotebookConfig,
    git: Arc<GitManager>,
    lock: Arc<NotebookLock>,
    options: AutoCommitOptions,
    lock_timeout: Duration,
    pending: Mutex<Pending>,
    health: Mutex<Health>,
    paused: AtomicBool,
    /// The watcher's live count of inotify watches (unset without a watcher).
    watches: std::sync::OnceLock<Arc<AtomicUsize>>,
    events: broadcast::Sender<NotebookEvent>,
}

enum Control {
    Pause,
    Resume,
    /// Commit everything pending now, then answer.
    Flush(oneshot::Sender<()>),
    /// Commit everything pending, stop watching, end the loop.
    Stop(oneshot::Sender<()>),
}

/// A running notebook. Dropping it does not stop it: call [`Notebook::stop`].
pub struct Notebook {
    shared: Arc<Shared>,
    control: mpsc::UnboundedSender<Control>,
}

/// Result of one commit round.
enum Round {
    /// Nothing pending when the lock came.
    Idle,
    /// Committed (or found nothing to commit).
    Done(Box<AutoCommitOutcome>),
    /// Could not commit now; the batch is back in `pending`.
    Retry(GitError),
    /// The lock wait timed out (only flushes have a timeout).
    LockTimeout,
}

type RoundFuture = Pin<Box<dyn Future<Output = Round> + Send>>;

impl Notebook {
    /// Opens (or creates) the notebook's repository, starts its watcher and
    /// its loop, and returns once the catch-up commit of whatever changed
    /// while gitlockd was not running has been tried.
    pub async fn start(
        config: NotebookConfig,
        lock_timeout: Duration,
        events: broadcast::Sender<NotebookEvent>,
    ) -> Result<Notebook, StartError> {
        let name = config.name.clone();
        let filter =
            Arc::new(
                PathFilter::new(&config.ignore).map_err(|source| StartError::Filter {
                    name: name.clone(),
                    source,
                })?,
            );
        let git = open_repository(&config, lock_timeout, filter.clone()).await?;
        let lock = git.lock().clone();
        let options = AutoCommitOptions {
            notebook: name.clone(),
            message: config.message.clone(),
            author_name: config.author_name.clone(),
            author_email: config.author_email.clone(),
            max_file_size: config.max_file_size,
            filter: filter.clone(),
        };
        let shared = Arc::new(Shared {
            name: name.clone(),
            config: config.clone(),
            git,
            lock,
            options,
            lock_timeout,
            pending: Mutex::new(Pending::default()),
            health: Mutex::new(Health {
                state: "clean".into(),
                ..Health::default()
            }),
            paused: AtomicBool::new(false),
            watches: std::sync::OnceLock::new(),
            events,
        });

        // Watch first, then catch up: a change made between the two is seen twice, never lost.
        let (watch_tx, watch_rx) = mpsc::unbounded_channel();
        let root = shared.git.root().to_path_buf();
        let watch_name = name.clone();
        let watcher = tokio::task::spawn_blocking(move || {
            NotebookWatcher::start(&watch_name, &root, filter, watch_tx)
        })
        .await
        .map_err(|e| StartError::Task {
            name: name.clone(),
            message: e.to_string(),
        })?;
        let watcher = match watcher {
            Ok(w) => {
                let _ = shared.watches.set(w.watch_counter());
                Some(w)
            }
            Err(e) => {
                // No watcher: the notebook still commits on rescans (start, flushes, requests).
                tracing::error!(notebook = %name, error = %e, "cannot watch the notebook; changes are committed only at start, on request and at shutdown");
                shared.health.lock().watch_problem = Some(e.to_string());
                None
            }
        };
        {
            let mut pending = shared.pending.lock();
            pending.rescan = true;
            pending.touch(Instant::now());
        }
        let (control, control_rx) = mpsc::unbounded_channel();
        let (caught_up_tx, caught_up_rx) = oneshot::channel();
        let owner = OwnerId::fresh();
        git_lock_manager().label_owner(owner, format!("auto-commit of {name}"));
        tokio::spawn(run(
            shared.clone(),
            owner,
            watcher,
            watch_rx,
            control_rx,
            Some(caught_up_tx),
        ));
        // The loop answers after its first (catch-up) round, whatever its
        // outcome. A client may hold the lock already (a notebook restarted
        // by a reload): wait for that at most lock.timeout; the loop goes on.
        let _ = tokio::time::timeout(lock_timeout, caught_up_rx).await;
        Ok(Notebook { shared, control })
    }

    /// The notebook's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &NotebookConfig {
        &self.shared.config
    }

    /// The notebook's git operations.
    pub fn git(&self) -> &Arc<GitManager> {
        &self.shared.git
    }

    /// The notebook's lock.
    pub fn lock(&self) -> &Arc<NotebookLock> {
        &self.shared.lock
    }

    /// The options auto-commits use (message template, author, filter).
    pub fn commit_options(&self) -> &AutoCommitOptions {
        &self.shared.options
    }

    /// The canonical root folder.
    pub fn root(&self) -> &Path {
        self.shared.git.root()
    }

    /// Stops or restarts auto-commits; events keep collecting while paused.
    pub fn set_paused(&self, paused: bool) {
        self.shared.paused.store(paused, Ordering::SeqCst);
        let _ = self.control.send(if paused {
            Control::Pause
        } else {
            Control::Resume
        });
    }

    /// Whether auto-commits are paused.
    pub fn is_paused(&self) -> bool {
        self.shared.paused.load(Ordering::SeqCst)
    }

    /// Commits everything pending now (waiting up to `lock.timeout` for the lock).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Commits everything pending, stops watching and ends the loop.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Announces a commit made outside the loop (a socket `commit`).
    pub fn announce_commit(&self, commit: String, paths: Vec<String>) {
        let files = paths.len();
        self.shared.health.lock().last_commit = Some(LastCommit {
            id: commit.clone(),
            files,
            at: SystemTime::now(),
        });
        let _ = self.shared.events.send(NotebookEvent::Commit {
            notebook: self.shared.name.clone(),
            commit,
            paths,
        });
    }

    /// This notebook's entry in the `status` response. Never waits for the lock.
    pub async fn status(&self) -> Value {
        let git = self.shared.git.clone();
        let head = tokio::task::spawn_blocking(move || git.head_info())
            .await
            .ok()
            .and_then(Result::ok);
        let (branch, head_id) = match &head {
            Some(h) => (h.branch.clone(), h.head.map(|oid| oid.to_string())),
            None => (None, None),
        };
        let snapshot = self.shared.lock.snapshot();
        let (pending, rescan) = {
            let p = self.shared.pending.lock();
            (p.paths.len(), p.rescan)
        };
        let health = self.shared.health.lock();
        let holders: Vec<Value> = snapshot
            .holders
            .iter()
            .map(|h| {
                json!({
                    "owner": h.owner.as_u64(),
                    "label": h.label,
                    "mode": h.mode.as_str(),
                    "depth": h.depth,
                    "held_ms": h.held_for.as_millis() as u64,
                })
            })
            .collect();
        let m = &snapshot.metrics;
        json!({
            "name": self.shared.name,
            "path": self.root().display().to_string(),
            "branch": branch,
            "head": head_id,
            "pending": pending,
            "rescan_pending": rescan,
            "paused": self.is_paused(),
            "state": health.state,
            "lock": {
                "held": snapshot.held,
                "mode": snapshot.mode.map(|m| m.as_str()),
                "holders": holders,
                "waiters": snapshot.waiters,
                "acquisitions": m.acquisitions,
                "contended": m.contended,
                "timeouts": m.timeouts,
                "total_wait_ms": m.total_wait.as_secs_f64() * 1000.0,
                "max_wait_ms": m.max_wait.as_secs_f64() * 1000.0,
                "total_hold_ms": m.total_hold.as_secs_f64() * 1000.0,
                "max_hold_ms": m.max_hold.as_secs_f64() * 1000.0,
            },
            "last_commit": health.last_commit.as_ref().map(|c| json!({
                "id": c.id,
                "files": c.files,
                "time": rfc3339(c.at),
            })),
            "last_error": health.last_error.clone().or_else(|| health.watch_problem.clone()),
            "watches": self.shared.watches.get().map_or(0, |c| c.load(Ordering::Relaxed)),
            "skipped_large": health.skipped_large.iter().map(|(p, size)| json!({
                "path": p.display().to_string(),
                "size": size,
            })).collect::<Vec<_>>(),
            "sync": Value::Null,
        })
    }
}

async fn open_repository(
    config: &NotebookConfig,
    lock_timeout: Duration,
    filter: Arc<PathFilter>,
) -> Result<Arc<GitManager>, StartError> {
    let name = config.name.clone();
    let path = config.path.clone();
    let init = config.init;
    let max_file_size = config.max_file_size;
    let (author_name, author_email) = (config.author_name.clone(), config.author_email.clone());
    let task = tokio::task::spawn_blocking(move || -> Result<Arc<GitManager>, StartError> {
        if init && !path.exists() {
            std::fs::create_dir_all(&path).map_err(|source| StartError::Create {
                name: name.clone(),
                path: path.clone(),
                source,
            })?;
        }
        let git = GitManager::new(&path)
            .map_err(|source| StartError::Git {
                name: name.clone(),
                source,
            })?
            .with_lock_timeout(lock_timeout)
            .with_filter(filter)
            .with_max_file_size(max_file_size)
            .with_author(author_name, author_email);
        let created = git
            .init_or_get_repo(init)
            .map_err(|source| StartError::Git {
                name: name.clone(),
                source,
            })?;
        if created {
            tracing::info!(notebook = %name, path = %path.display(), "created a new repository");
        }
        Ok(Arc::new(git))
    });
    task.await.map_err(|e| StartError::Task {
        name: config.name.clone(),
        message: e.to_string(),
    })?
}

/// Backoff for retries: doubles from 100 ms up to a cap, with jitter so
/// gitlockd and another process do not retry in lockstep.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);

    fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    fn step(&mut self, cap: Duration) -> Duration {
        let base = self.next.min(cap);
        self.next = (self.next * 2).min(cap);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        // Up to +25 % jitter.
        base + base.mul_f64(f64::from(nanos % 1000) / 4000.0)
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    shared: Arc<Shared>,
    owner: OwnerId,
    watcher: Option<NotebookWatcher>,
    mut watch_rx: mpsc::UnboundedReceiver<WatchEvent>,
    mut control_rx: mpsc::UnboundedReceiver<Control>,
    mut caught_up: Option<oneshot::Sender<()>>,
) {
    let mut round: Option<RoundFuture> = None;
    let mut retry_at: Option<Instant> = None;
    let mut backoff = Backoff::new();
    let mut flush_waiters: Vec<oneshot::Sender<()>> = Vec::new();
    let mut stop_waiter: Option<oneshot::Sender<()>> = None;
    // The first round (catch-up) starts at once.
    round = round.or_else(|| Some(Box::pin(commit_round(shared.clone(), owner, None))));

    loop {
        let due = if round.is_some() {
            None
        } else {
            due_time(&shared, retry_at)
        };
        tokio::select! {
            result = async { match round.as_mut() { Some(r) => r.await, None => std::future::pending().await } } => {
                round = None;
                retry_at = settle(&shared, result, &mut backoff);
                if let Some(tx) = caught_up.take() {
                    let _ = tx.send(());
                }
                if stop_waiter.is_some() {
                    break;
                }
                if !flush_waiters.is_empty() {
                    for tx in flush_waiters.drain(..) {
                        let _ = tx.send(());
                    }
                }
            }
            Some(event) = watch_rx.recv() => on_watch_event(&shared, event),
            message = control_rx.recv() => match message {
                Some(Control::Pause) => {}
                Some(Control::Resume) => retry_at = None,
                Some(Control::Flush(tx)) => {
                    flush_waiters.push(tx);
                    if round.is_none() {
                        round = Some(Box::pin(commit_round(shared.clone(), owner, Some(shared.lock_timeout))));
                    }
                }
                Some(Control::Stop(tx)) => {
                    stop_waiter = Some(tx);
                    match round.take() {
                        // Let the round in flight finish, bounded by lock.timeout.
                        Some(r) => {
                            let timeout = shared.lock_timeout;
                            round = Some(Box::pin(async move {
                                tokio::time::timeout(timeout, r).await.unwrap_or(Round::LockTimeout)
                            }));
                        }
                        None => break,
                    }
                }
                None => break,
            },
            _ = sleep_until_opt(due) => {
                round = Some(Box::pin(commit_round(shared.clone(), owner, None)));
            }
        }
    }

    // Final flush: whatever is still pending, waiting at most lock.timeout for the lock.
    drain_watch_events(&shared, &mut watch_rx);
    let known = !shared.pending.lock().is_empty();
    // A save made just before the stop may still be on its way (inotify, the
    // watcher's batch window) and not in `pending` yet: compare the whole
    // work tree with HEAD, as at start. For that alone wait only briefly
    // for the lock: a client holding it must not delay the exit for nothing.
    shared.pending.lock().rescan = true;
    let wait = if known {
        shared.lock_timeout
    } else {
        shared.lock_timeout.min(Duration::from_secs(1))
    };
    let result = commit_round(shared.clone(), owner, Some(wait)).await;
    settle(&shared, result, &mut backoff);
    if let Some(w) = watcher {
        w.stop();
    }
    if known && !shared.pending.lock().is_empty() {
        tracing::warn!(notebook = %shared.name, "stopping with uncommitted changes; they are committed at the next start");
    }
    git_lock_manager().forget_owner(owner);
    for tx in flush_waiters {
        let _ = tx.send(());
    }
    if let Some(tx) = caught_up {
        let _ = tx.send(());
    }
    if let Some(tx) = stop_waiter {
        let _ = tx.send(());
    }
}

async fn sleep_until_opt(due: Option<Instant>) {
    match due {
        Some(at) => sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn drain_watch_events(shared: &Shared, rx: &mut mpsc::UnboundedReceiver<WatchEvent>) {
    while let Ok(event) = rx.try_recv() {
        on_watch_event(shared, event);
    }
}

/// When the next round should start, if one is due at all.
fn due_time(shared: &Shared, retry_at: Option<Instant>) -> Option<Instant> {
    if shared.paused.load(Ordering::SeqCst) {
        return None;
    }
    let pending = shared.pending.lock();
    if pending.is_empty() {
        return None;
    }
    if let Some(at) = retry_at {
        return Some(at);
    }
    let quiet = pending.last_at.map(|t| t + shared.config.debounce);
    let latest = pending.first_at.map(|t| t + shared.config.max_delay);
    match (quiet, latest) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b).or(Some(Instant::now())),
    }
}

fn on_watch_event(shared: &Shared, event: WatchEvent) {
    let now = Instant::now();
    match event {
        WatchEvent::Changed(paths) => {
            let mut pending = shared.pending.lock();
            pending.paths.extend(paths);
            pending.touch(now);
        }
        WatchEvent::Rescan { reason } => {
            tracing::warn!(notebook = %shared.name, %reason, "rescanning the notebook");
            shared.health.lock().watch_problem = Some(reason);
            let mut pending = shared.pending.lock();
            pending.rescan = true;
            pending.touch(now);
        }
        WatchEvent::Error(message) => {
            tracing::warn!(notebook = %shared.name, %message, "watcher problem");
            shared.health.lock().watch_problem = Some(message);
        }
    }
}

/// Waits for the lock, takes the batch, commits it on a blocking thread.
async fn commit_round(shared: Arc<Shared>, owner: OwnerId, timeout: Option<Duration>) -> Round {
    let guard = match shared
        .lock
        .lock_async(owner, LockMode::Exclusive, timeout)
        .await
    {
        Ok(g) => g,
        Err(_) => return Round::LockTimeout,
    };
    // Taken only now: everything that arrived while we waited joins this commit.
    let batch = {
        let mut pending = shared.pending.lock();
        if pending.is_empty() {
            return Round::Idle;
        }
        let batch = Batch {
            paths: std::mem::take(&mut pending.paths).into_iter().collect(),
            rescan: std::mem::take(&mut pending.rescan),
        };
        pending.first_at = None;
        pending.last_at = None;
        batch
    };
    let worker = shared.clone();
    let task = tokio::task::spawn_blocking(move || {
        let _hold = guard;
        with_owner(owner, || {
            commit_batch(&worker, &batch).map_err(|e| (e, batch))
        })
    });
    match task.await {
        Ok(Ok(outcome)) => {
            if !outcome.recheck.is_empty() {
                let mut pending = shared.pending.lock();
                pending.paths.extend(outcome.recheck.iter().cloned());
                pending.touch(Instant::now());
            }
            Round::Done(Box::new(outcome))
        }
        Ok(Err((error, batch))) => {
            requeue(&shared, batch);
            Round::Retry(error)
        }
        Err(join) => {
            // The blocking task panicked: nothing was committed, so rescan everything.
            let mut pending = shared.pending.lock();
            pending.rescan = true;
            pending.touch(Instant::now());
            Round::Retry(GitError::NotFound {
                what: format!("internal error in the commit task: {join}"),
            })
        }
    }
}

fn requeue(shared: &Shared, batch: Batch) {
    let mut pending = shared.pending.lock();
    pending.paths.extend(batch.paths);
    pending.rescan |= batch.rescan;
    pending.touch(Instant::now());
}

fn commit_batch(shared: &Shared, batch: &Batch) -> Result<AutoCommitOutcome, GitError> {
    let git = &shared.git;
    if let crate::git::RepoState::Busy(state) = git.repo_state()? {
        return Err(GitError::Busy { state });
    }
    let mut paths = batch.paths.clone();
    if batch.rescan {
        let mut all: BTreeSet<PathBuf> = paths.into_iter().collect();
        all.extend(git.pending_changes(&shared.options)?);
        paths = all.into_iter().collect();
    }
    if paths.is_empty() {
        return Ok(AutoCommitOutcome::default());
    }
    git.auto_commit_on_change(&paths, &shared.options)
}

/// Records a round's outcome; returns when to retry, if a retry is needed.
fn settle(shared: &Shared, result: Round, backoff: &mut Backoff) -> Option<Instant> {
    let now = Instant::now();
    match result {
        Round::Idle => None,
        Round::Done(outcome) => {
            backoff.reset();
            let mut health = shared.health.lock();
            health.state = "clean".into();
            health.last_error = None;
            for (path, size) in &outcome.skipped_large {
                tracing::warn!(notebook = %shared.name, path = %path.display(), size, limit = shared.config.max_file_size, "file larger than max_file_size is not committed");
            }
            // A file skipped earlier stays reported until it is committed,
            // shrinks or goes: this round's batch may simply not include it.
            let mut skipped = outcome.skipped_large.clone();
            for (path, _) in std::mem::take(&mut health.skipped_large) {
                if outcome.paths.contains(&path) || skipped.iter().any(|(p, _)| *p == path) {
                    continue;
                }
                match std::fs::symlink_metadata(shared.git.root().join(&path)) {
                    Ok(m) if m.is_file() && m.len() > shared.config.max_file_size => {
                        skipped.push((path, m.len()));
                    }
                    _ => {}
                }
            }
            health.skipped_large = skipped;
            if let Some(id) = outcome.commit {
                let id = id.to_string();
                let short = &id[..id.len().min(8)];
                tracing::info!(notebook = %shared.name, commit = short, files = outcome.paths.len(), "committed");
                health.last_commit = Some(LastCommit {
                    id: id.clone(),
                    files: outcome.paths.len(),
                    at: SystemTime::now(),
                });
                drop(health);
                let _ = shared.events.send(NotebookEvent::Commit {
                    notebook: shared.name.clone(),
                    commit: id,
                    paths: outcome
                        .paths
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect(),
                });
            }
            None
        }
        Round::LockTimeout => Some(now + backoff.step(Duration::from_secs(5))),
        Round::Retry(error) => {
            let mut health = shared.health.lock();
            match &error {
                GitError::Busy { state } => {
                    if health.state != *state {
                        tracing::info!(notebook = %shared.name, %state, "repository is mid-{state}; auto-commit waits until it is resolved");
                    }
                    health.state = state.clone();
                    health.last_error = Some(format!(
                        "repository is mid-{state}: auto-commit waits until it is finished or aborted"
                    ));
                    // Nothing tells us when the user finishes: look again shortly.
                    Some(now + Duration::from_millis(500))
                }
                GitError::IndexLocked { .. } => {
                    let message = error.to_string();
                    if health.last_error.as_deref() != Some(message.as_str()) {
                        tracing::warn!(notebook = %shared.name, error = %message, "repository locked by another process; retrying");
                    }
                    health.last_error = Some(message);
                    Some(now + backoff.step(Duration::from_secs(5)))
                }
                _ => {
                    let message = error.to_string();
                    if health.last_error.as_deref() != Some(message.as_str()) {
                        tracing::error!(notebook = %shared.name, error = %message, "auto-commit failed; retrying");
                    }
                    health.state = "error".into();
                    health.last_error = Some(message);
                    Some(now + backoff.step(Duration::from_secs(30)))
                }
            }
        }
    }
}

/// RFC 3339 in UTC, second precision.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
