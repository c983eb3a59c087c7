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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::sleep_until;

use crate::config::{NotebookConfig, SyncConfig};
use crate::filter::PathFilter;
use crate::git::{AutoCommitOptions, AutoCommitOutcome, GitError, GitManager};
use crate::lock::{git_lock_manager, with_owner, LockMode, NotebookLock, OwnerId};
use crate::schedule::Pending;
use crate::sync::{self as remote_sync, PushOutcome, SyncError, SyncOutcome};
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
    /// The notebook's `last_error` changed to a new error.
    Error {
        /// The notebook's name.
        notebook: String,
        /// The error, as status shows it.
        message: String,
    },
    /// Sync became diverged, or failed with a new error.
    Sync {
        /// The notebook's name.
        notebook: String,
        /// "diverged" or "error".
        state: String,
        /// What happened (the remote ref kept, or the error).
        message: String,
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
    /// Files (or folders) gitlockd may not read, with the reason; each is
    /// warned about once, and leaves the list when it is committed or gone.
    skipped_unreadable: Vec<(PathBuf, String)>,
    /// Why the watcher asked for rescans, when it did.
    watch_problem: Option<String>,
    /// Why the last commit went through `git` (empty: libgit2 made it).
    git_features: Vec<String>,
    /// The last round failed in a way only a change can fix (a hook or a
    /// filter refused): the next file event retries at once, after debounce.
    retry_on_change: bool,
}

/// What status shows about sync (only for notebooks with `[notebook.sync]`).
#[derive(Debug, Default)]
struct SyncHealth {
    /// "ok", "diverged" or "error".
    state: String,
    ahead: usize,
    behind: usize,
    last_sync: Option<SystemTime>,
    last_error: Option<String>,
    next_try: Option<SystemTime>,
    diverged_ref: Option<String>,
}

/// Why a `sync` request did not succeed.
#[derive(Debug, Clone)]
pub enum SyncFailure {
    /// The notebook has no `[notebook.sync]` section.
    NotConfigured(String),
    /// The repository is mid-merge or similar.
    Conflict(String),
    /// Fetch, push or integration failed; the message says why.
    Failed(String),
}

/// Network work a round does after committing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyncWork {
    None,
    /// Push local commits only.
    Push,
    /// Fetch, integrate, push.
    Full,
}

/// What a round's sync part did.
enum SyncDone {
    Full(SyncOutcome),
    Push(PushOutcome),
}

/// The batch a round commits.
struct Batch {
    paths: Vec<PathBuf>,
    rescan: bool,
    /// When its oldest change arrived, kept across retries for max_delay.
    first_at: Option<Instant>,
}

fn min_instant(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// State shared by the loop, the socket server and status.
struct Shared {
    name: String,
    config: NotebookConfig,
    git: Arc<GitManager>,
    /// The repository's git directory, where the crash marker lives.
    git_dir: PathBuf,
    lock: Arc<NotebookLock>,
    options: AutoCommitOptions,
    lock_timeout: Duration,
    pending: Mutex<Pending>,
    health: Mutex<Health>,
    paused: AtomicBool,
    /// When a `pause --for` ends; `None` while paused until `resume`.
    pause_until: Mutex<Option<SystemTime>>,
    /// Bumped at every pause and resume: an expiry timer of an older pause
    /// does nothing.
    pause_generation: AtomicU64,
    /// Set by [`Notebook::stop`]: a loop that crashes now is not restarted.
    stopping: AtomicBool,
    /// The watcher's live count of inotify watches (unset without a watcher).
    watches: Mutex<Option<Arc<AtomicUsize>>>,
    /// Some folders (or all) have no watch: every round rescans, and a timer
    /// rescans and retries the watches until they are back.
    unwatched: AtomicBool,
    events: broadcast::Sender<NotebookEvent>,
    /// Sync state; `None` when sync is off for this notebook.
    sync_health: Mutex<Option<SyncHealth>>,
    /// Who sync's merge commits are made by (the notebook's author settings).
    author: remote_sync::Author,
    /// Ahead/behind from local refs, for status (never under the notebook lock).
    live_counts: Mutex<remote_sync::LiveCounts>,
}

enum Control {
    Pause,
    Resume,
    /// Commit everything pending, stop watching, end the loop.
    Stop(oneshot::Sender<()>),
    /// Commit pending changes, then fetch, integrate and push now.
    Sync(SyncReply),
}

type SyncReply = oneshot::Sender<Result<SyncOutcome, SyncFailure>>;

/// A running notebook. Dropping it does not stop it: call [`Notebook::stop`].
pub struct Notebook {
    shared: Arc<Shared>,
    control: mpsc::UnboundedSender<Control>,
}

/// Result of one round: its commit part, and its sync part when it had one.
struct RoundResult {
    commit: Round,
    sync: Option<Result<SyncDone, SyncError>>,
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

type RoundFuture = Pin<Box<dyn Future<Output = RoundResult> + Send>>;

impl Notebook {
    /// Opens (or creates) the notebook's repository, starts its watcher and
    /// its loop (on the daemon's `tasks`, which waits for it at shutdown),
    /// and returns once the catch-up commit of whatever changed while
    /// gitlockd was not running has been tried.
    pub async fn start(
        config: NotebookConfig,
        lock_timeout: Duration,
        events: broadcast::Sender<NotebookEvent>,
        tasks: &tokio_util::task::TaskTracker,
    ) -> Result<Notebook, StartError> {
        let name = config.name.clone();
        let filter =
            Arc::new(
                PathFilter::new(&config.ignore).map_err(|source| StartError::Filter {
                    name: name.clone(),
                    source,
                })?,
            );
        let (git, git_dir) = open_repository(&config, lock_timeout, filter.clone()).await?;
        let lock = git.lock().clone();
        let options = AutoCommitOptions {
            notebook: name.clone(),
            message: config.message.clone(),
            author_name: config.author_name.clone(),
            author_email: config.author_email.clone(),
            max_file_size: config.max_file_size,
            filter: filter.clone(),
            hooks: config.hooks,
        };
        let shared = Arc::new(Shared {
            name: name.clone(),
            config: config.clone(),
            git,
            git_dir,
            lock,
            options,
            lock_timeout,
            pending: Mutex::new(Pending::default()),
            health: Mutex::new(Health {
                state: "clean".into(),
                ..Health::default()
            }),
            paused: AtomicBool::new(false),
            pause_until: Mutex::new(None),
            pause_generation: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            watches: Mutex::new(None),
            unwatched: AtomicBool::new(false),
            events,
            sync_health: Mutex::new(config.sync.as_ref().map(|_| SyncHealth {
                state: "ok".into(),
                ..SyncHealth::default()
            })),
            author: remote_sync::Author {
                name: config.author_name.clone(),
                email: config.author_email.clone(),
            },
            live_counts: Mutex::new(remote_sync::LiveCounts::default()),
        });

        // The loop watches first, then catches up: a change made between the
        // two is seen twice, never lost.
        let setup = WatchSetup {
            root: shared.git.root().to_path_buf(),
            filter,
        };
        {
            let mut pending = shared.pending.lock();
            pending.rescan = true;
            pending.touch(Instant::now());
        }
        let (control, control_rx) = mpsc::unbounded_channel();
        // A pause outlives restarts and reloads: in force before the catch-up round.
        let remembered = {
            let root = shared.git.root().to_path_buf();
            tokio::task::spawn_blocking(move || crate::pause::load(&root))
                .await
                .unwrap_or(Ok(None))
        };
        match remembered {
            Ok(Some(until)) => {
                tracing::info!(notebook = %name, until = ?until.map(rfc3339), "auto-commits stay paused (paused before the restart)");
                apply_pause(&shared, &control, until);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(notebook = %name, error = %e, "cannot read the remembered pauses")
            }
        }
        let (caught_up_tx, caught_up_rx) = oneshot::channel();
        let owner = OwnerId::fresh();
        git_lock_manager().label_owner(owner, format!("auto-commit of {name}"));
        tasks.spawn(supervise(
            shared.clone(),
            owner,
            setup,
            control_rx,
            caught_up_tx,
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

    /// The repository's git directory (`.git`, or a worktree's gitdir).
    pub fn git_dir(&self) -> &Path {
        &self.shared.git_dir
    }

    /// The canonical root folder.
    pub fn root(&self) -> &Path {
        self.shared.git.root()
    }

    /// Stops auto-commits, for `duration` or until [`Notebook::resume`];
    /// events keep collecting. Remembered across restarts and reloads.
    /// Returns when the pause ends by itself.
    pub fn pause(&self, duration: Option<Duration>) -> Option<SystemTime> {
        let until = duration.map(|d| SystemTime::now() + d);
        apply_pause(&self.shared, &self.control, until);
        let root = self.root().to_path_buf();
        if let Err(e) = crate::pause::save(&root, until) {
            tracing::warn!(notebook = %self.shared.name, error = %e, "the pause holds until the daemon stops, but is not remembered after it");
        }
        until
    }

    /// Restarts auto-commits; what collected while paused is committed.
    pub fn resume(&self) {
        resume(&self.shared, &self.control);
    }

    /// Whether auto-commits are paused.
    pub fn is_paused(&self) -> bool {
        self.shared.paused.load(Ordering::SeqCst)
    }

    /// Commits everything pending, stops watching and ends the loop.
    pub async fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Commits pending changes, then fetches, integrates and pushes now.
    pub async fn sync_now(&self) -> Result<SyncOutcome, SyncFailure> {
        if self.shared.config.sync.is_none() {
            return Err(SyncFailure::NotConfigured(format!(
                "sync is not configured for notebook {} (add a [notebook.sync] section)",
                self.shared.name
            )));
        }
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Sync(tx)).is_err() {
            return Err(SyncFailure::Failed("the notebook is stopping".into()));
        }
        rx.await
            .unwrap_or_else(|_| Err(SyncFailure::Failed("the notebook stopped".into())))
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
        let shared = self.shared.clone();
        let hooks = self.shared.config.hooks;
        let probe = tokio::task::spawn_blocking(move || {
            let git = &shared.git;
            // Live: an auto-commit waiting for push_delay counts at once.
            let counts = shared.config.sync.as_ref().and_then(|cfg| {
                shared
                    .live_counts
                    .lock()
                    .refresh(git.root(), cfg)
                    .map_err(|e| tracing::debug!(notebook = %shared.name, error = %e, "ahead/behind unknown"))
                    .ok()
            });
            (
                git.head_info().ok(),
                git.repo_state().ok(),
                counts,
                git.git_features(hooks).unwrap_or_default(),
            )
        })
        .await
        .ok();
        let (head, repo_state, counts, features) = probe.unwrap_or((None, None, None, Vec::new()));
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
        // What the repository asks for now, plus what the last commit found
        // in the files themselves (a filter attribute, skip-worktree entries).
        let mut git_features: Vec<String> = features.iter().map(ToString::to_string).collect();
        for f in &health.git_features {
            if !git_features.contains(f) {
                git_features.push(f.clone());
            }
        }
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
            "paused_until": self.shared.pause_until.lock().map(rfc3339),
            "state": match repo_state {
                Some(crate::git::RepoState::Busy(state)) => state,
                _ => health.state.clone(),
            },
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
            "watches": self.shared.watches.lock().as_ref().map_or(0, |c| c.load(Ordering::Relaxed)),
            "watch_problem": health.watch_problem.clone(),
            "commit_via": if git_features.is_empty() { "libgit2" } else { "git" },
            "git_features": git_features,
            "skipped_large": health.skipped_large.iter().map(|(p, size)| json!({
                "path": p.display().to_string(),
                "size": size,
            })).collect::<Vec<_>>(),
            "skipped_unreadable": health.skipped_unreadable.iter().map(|(p, reason)| json!({
                "path": p.display().to_string(),
                "error": reason,
            })).collect::<Vec<_>>(),
            "sync": health_sync(&self.shared, counts).unwrap_or(Value::Null),
        })
    }
}

/// Pauses in memory, with a timer that resumes at `until`.
fn apply_pause(
    shared: &Arc<Shared>,
    control: &mpsc::UnboundedSender<Control>,
    until: Option<SystemTime>,
) {
    let generation = shared.pause_generation.fetch_add(1, Ordering::SeqCst) + 1;
    *shared.pause_until.lock() = until;
    shared.paused.store(true, Ordering::SeqCst);
    let _ = control.send(Control::Pause);
    let Some(until) = until else {
        return;
    };
    let wait = until
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    let (shared, control) = (shared.clone(), control.clone());
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        if shared.pause_generation.load(Ordering::SeqCst) == generation
            && !shared.stopping.load(Ordering::SeqCst)
        {
            tracing::info!(notebook = %shared.name, "pause ended; auto-commits resumed");
            resume(&shared, &control);
        }
    });
}

/// Ends a pause, forgets it on disk, and lets the loop commit what collected.
fn resume(shared: &Shared, control: &mpsc::UnboundedSender<Control>) {
    shared.pause_generation.fetch_add(1, Ordering::SeqCst);
    *shared.pause_until.lock() = None;
    shared.paused.store(false, Ordering::SeqCst);
    let _ = control.send(Control::Resume);
    if let Err(e) = crate::pause::clear(shared.git.root()) {
        tracing::warn!(notebook = %shared.name, error = %e, "cannot forget the pause on disk: it comes back after a restart");
    }
}

/// The `sync` part of status; `counts`: live ahead/behind from local refs
/// (else the last sync's).
fn health_sync(shared: &Shared, counts: Option<(usize, usize)>) -> Option<Value> {
    let cfg = shared.config.sync.as_ref()?;
    let guard = shared.sync_health.lock();
    let h = guard.as_ref()?;
    let (ahead, behind) = counts.unwrap_or((h.ahead, h.behind));
    Some(json!({
        "remote": cfg.remote,
        "branch": cfg.branch,
        "state": h.state,
        "ahead": ahead,
        "behind": behind,
        "last_sync": h.last_sync.map(rfc3339),
        "last_error": h.last_error,
        "next_try": h.next_try.map(rfc3339),
        "diverged_ref": h.diverged_ref,
    }))
}

async fn open_repository(
    config: &NotebookConfig,
    lock_timeout: Duration,
    filter: Arc<PathFilter>,
) -> Result<(Arc<GitManager>, PathBuf), StartError> {
    let name = config.name.clone();
    let path = config.path.clone();
    let init = config.init;
    let max_file_size = config.max_file_size;
    let (author_name, author_email) = (config.author_name.clone(), config.author_email.clone());
    let hooks = config.hooks;
    let task = tokio::task::spawn_blocking(
        move || -> Result<(Arc<GitManager>, PathBuf), StartError> {
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
                .with_author(author_name, author_email)
                .with_hooks(hooks);
            let created = git
                .init_or_get_repo(init)
                .map_err(|source| StartError::Git {
                    name: name.clone(),
                    source,
                })?;
            if created {
                tracing::info!(notebook = %name, path = %path.display(), "created a new repository");
            }
            // Settings only `git` honours (signing, hooks, filters, sparse
            // checkout, split index) and no usable `git`: refuse rather than
            // commit something else than git would.
            git.check_git_usable(hooks)
                .map_err(|source| StartError::Git {
                    name: name.clone(),
                    source,
                })?;
            let repo = git2::Repository::open_ext(
                git.root(),
                git2::RepositoryOpenFlags::NO_SEARCH,
                std::iter::empty::<&std::ffi::OsStr>(),
            )
            .map_err(|e| StartError::Git {
                name: name.clone(),
                source: GitError::NotFound {
                    what: format!("repository at {}: {}", path.display(), e.message()),
                },
            })?;
            let git_dir = repo.path().to_path_buf();
            let removed = crate::recovery::recover(&git_dir, repo.commondir());
            if !removed.is_empty() {
                tracing::warn!(notebook = %name, count = removed.len(), "recovered from an interrupted write of a previous gitlockd");
            }
            // Before the catch-up commit: files a sync's checkout cut short by
            // a crash had unlinked must not be committed as deletions. Not
            // while a live gitlockd's marker is still there.
            if !git_dir.join(crate::recovery::MARKER).exists() {
                match remote_sync::recover_interrupted_checkout(
                    git.root(),
                    &remote_sync::GitCli::default(),
                ) {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::warn!(notebook = %name, files = n, "restored files an interrupted sync checkout had removed")
                    }
                    Err(e) => {
                        tracing::warn!(notebook = %name, error = %e, "cannot check for an interrupted sync checkout")
                    }
                }
            }
            Ok((Arc::new(git), git_dir))
        },
    );
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

/// Timers and waiters of the sync schedule.
struct SyncSchedule {
    /// Next fetch + integrate + push.
    pull_due: Option<Instant>,
    /// Next push of fresh local commits.
    push_due: Option<Instant>,
    /// `sync` requests waiting for the next round.
    waiting: Vec<SyncReply>,
    /// Requests answered by the round in flight.
    in_flight: Vec<SyncReply>,
    backoff: Backoff,
}

impl SyncSchedule {
    fn new(cfg: Option<&SyncConfig>) -> SyncSchedule {
        // The first pull comes right after the catch-up commit.
        let pull_due = cfg
            .filter(|c| !c.pull_interval.is_zero())
            .map(|_| Instant::now() + Duration::from_millis(200));
        SyncSchedule {
            pull_due,
            push_due: None,
            waiting: Vec::new(),
            in_flight: Vec::new(),
            backoff: Backoff::new(),
        }
    }

    fn next_due(&self) -> Option<Instant> {
        if !self.waiting.is_empty() {
            return Some(Instant::now());
        }
        match (self.pull_due, self.push_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Decides the sync part of a round starting now.
    fn take_work(&mut self, now: Instant) -> SyncWork {
        if !self.waiting.is_empty() || self.pull_due.is_some_and(|t| t <= now) {
            self.in_flight.append(&mut self.waiting);
            SyncWork::Full
        } else if self.push_due.is_some_and(|t| t <= now) {
            SyncWork::Push
        } else {
            SyncWork::None
        }
    }
}

/// What it takes to (re)start a notebook's watcher.
#[derive(Clone)]
struct WatchSetup {
    root: PathBuf,
    filter: Arc<PathFilter>,
}

/// Starts the watcher on a blocking thread (it walks the tree), with a fresh
/// queue: the queue closing is how the loop learns that the watcher died.
/// Without a watcher the notebook is marked unwatched: it rescans on a timer
/// and tries again.
async fn start_watcher(
    shared: &Shared,
    setup: &WatchSetup,
) -> (Option<NotebookWatcher>, mpsc::Receiver<WatchEvent>) {
    let (tx, rx) = mpsc::channel(crate::watch::NOTEBOOK_QUEUE);
    let name = shared.name.clone();
    let (root, filter) = (setup.root.clone(), setup.filter.clone());
    let started =
        tokio::task::spawn_blocking(move || NotebookWatcher::start(&name, &root, filter, tx)).await;
    let error = match started {
        Ok(Ok(w)) => {
            *shared.watches.lock() = Some(w.watch_counter());
            // A limit that refused folders inside says so in its first events.
            if shared.unwatched.swap(false, Ordering::SeqCst) {
                tracing::info!(notebook = %shared.name, "watching the notebook again");
                shared.health.lock().watch_problem = None;
            }
            return (Some(w), rx);
        }
        Ok(Err(e)) => e.to_string(),
        Err(join) => format!("the watcher's start-up task failed: {join}"),
    };
    let mut health = shared.health.lock();
    if health.watch_problem.as_deref() != Some(error.as_str()) {
        tracing::error!(notebook = %shared.name, error = %error, "cannot watch the notebook; changes are found by rescans every max_delay until watching works");
    }
    health.watch_problem = Some(error);
    shared.unwatched.store(true, Ordering::SeqCst);
    *shared.watches.lock() = None;
    (None, rx)
}

/// Runs the notebook's loop and restarts it (with backoff) if it panics:
/// the panic is logged and shown in `last_error`, and the restarted loop
/// rescans, so nothing pending is lost (it lives in `Shared`).
async fn supervise(
    shared: Arc<Shared>,
    owner: OwnerId,
    setup: WatchSetup,
    control_rx: mpsc::UnboundedReceiver<Control>,
    caught_up: oneshot::Sender<()>,
) {
    // Shared with each incarnation of the loop; a panicking one drops its
    // guard (a tokio mutex does not poison), the next one takes it over.
    let control = Arc::new(tokio::sync::Mutex::new(control_rx));
    let mut caught_up = Some(caught_up);
    let mut backoff = Backoff::new();
    loop {
        let task = tokio::spawn(run(
            shared.clone(),
            owner,
            setup.clone(),
            control.clone(),
            caught_up.take(),
        ));
        let panic = match task.await {
            Ok(()) => return,
            Err(join) if join.is_panic() => crate::fault::panic_message(join.into_panic()),
            // Cancelled: the runtime is shutting down.
            Err(_) => return,
        };
        if shared.stopping.load(Ordering::SeqCst) {
            // Its stop request went down with it; the next start catches up.
            tracing::error!(notebook = %shared.name, error = %panic, "notebook loop crashed while stopping");
            return;
        }
        let message =
            format!("internal error: the notebook's loop crashed ({panic}); it was restarted");
        tracing::error!(notebook = %shared.name, error = %message, "notebook loop crashed; restarting it");
        {
            let mut health = shared.health.lock();
            health.state = "error".into();
            health.last_error = Some(message);
        }
        {
            let mut pending = shared.pending.lock();
            pending.rescan = true;
            pending.touch(Instant::now());
        }
        tokio::time::sleep(backoff.step(Duration::from_secs(5))).await;
    }
}

async fn run(
    shared: Arc<Shared>,
    owner: OwnerId,
    setup: WatchSetup,
    control: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Control>>>,
    mut caught_up: Option<oneshot::Sender<()>>,
) {
    let mut control_rx = control.lock().await;
    let (mut watcher, mut watch_rx) = start_watcher(&shared, &setup).await;
    // Restarts of a watcher that died, spaced out.
    let mut watch_backoff = Backoff::new();
    // The first round (catch-up) starts at once.
    let mut round: Option<RoundFuture> = Some(Box::pin(commit_round(
        shared.clone(),
        owner,
        None,
        SyncWork::None,
    )));
    let mut retry_at: Option<Instant> = None;
    let mut backoff = Backoff::new();
    let mut stop_waiter: Option<oneshot::Sender<()>> = None;
    // One budget of lock.timeout for the whole stop: the round in flight and the final flush.
    let mut stop_deadline: Option<Instant> = None;
    let mut sync = SyncSchedule::new(shared.config.sync.as_ref());
    // While folders are unwatched: when to rescan and retry the watches.
    let mut watch_due: Option<Instant> = None;

    loop {
        watch_due = match (shared.unwatched.load(Ordering::SeqCst), watch_due) {
            (false, _) => None,
            (true, None) => Some(Instant::now() + shared.config.max_delay),
            (true, due) => due,
        };
        let due = if round.is_some() {
            None
        } else {
            let commit_due = due_time(&shared, retry_at);
            let sync_due = if shared.paused.load(Ordering::SeqCst) && sync.waiting.is_empty() {
                None
            } else {
                sync.next_due()
            };
            match (commit_due, sync_due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        tokio::select! {
            result = async { match round.as_mut() { Some(r) => r.await, None => std::future::pending().await } } => {
                round = None;
                let committed = matches!(&result.commit, Round::Done(o) if o.commit.is_some());
                let commit_failed = matches!(&result.commit, Round::Retry(_) | Round::LockTimeout);
                let commit_error = match &result.commit {
                    Round::Retry(GitError::Busy { state }) => Some(SyncFailure::Conflict(format!("repository is mid-{state}; sync waits until it is resolved"))),
                    Round::Retry(e) => Some(SyncFailure::Failed(e.to_string())),
                    Round::LockTimeout => Some(SyncFailure::Failed("timed out waiting for the notebook lock".into())),
                    _ => None,
                };
                retry_at = settle(&shared, result.commit, &mut backoff);
                if let Some(cfg) = shared.config.sync.as_ref() {
                    match result.sync {
                        Some(done) => settle_sync(&shared, cfg, done, &mut sync),
                        None if commit_failed => {
                            for tx in sync.in_flight.drain(..) {
                                let _ = tx.send(Err(commit_error.clone().unwrap_or_else(|| SyncFailure::Failed("commit failed".into()))));
                            }
                        }
                        None => {}
                    }
                    if committed && cfg.push && sync.push_due.is_none() {
                        sync.push_due = Some(Instant::now() + cfg.push_delay);
                    }
                }
                if let Some(tx) = caught_up.take() {
                    let _ = tx.send(());
                }
                if stop_waiter.is_some() {
                    break;
                }
            }
            event = watch_rx.recv(), if watcher.is_some() => match event {
                Some(event) => {
                    let changed = matches!(event, WatchEvent::Changed { .. });
                    on_watch_event(&shared, event);
                    if changed && shared.health.lock().retry_on_change {
                        retry_at = None;
                    }
                }
                None => {
                    // The pump thread ended on its own: it crashed.
                    let why = watcher.take().and_then(NotebookWatcher::into_crash_reason).unwrap_or_else(|| "it stopped".into());
                    let message = format!("the file watcher stopped unexpectedly ({why}); restarting it");
                    tracing::error!(notebook = %shared.name, error = %message, "file watcher died");
                    shared.health.lock().watch_problem = Some(message);
                    shared.unwatched.store(true, Ordering::SeqCst);
                    *shared.watches.lock() = None;
                    let mut pending = shared.pending.lock();
                    pending.rescan = true;
                    pending.touch(Instant::now());
                    watch_due = Some(Instant::now() + watch_backoff.step(shared.config.max_delay));
                }
            },
            _ = sleep_until_opt(watch_due) => {
                watch_due = None;
                {
                    let mut pending = shared.pending.lock();
                    pending.rescan = true;
                    pending.touch(Instant::now());
                }
                match &watcher {
                    Some(w) => w.retry_watches(),
                    None => (watcher, watch_rx) = start_watcher(&shared, &setup).await,
                }
            }
            message = control_rx.recv() => match message {
                Some(Control::Pause) => {}
                Some(Control::Resume) => retry_at = None,
                Some(Control::Sync(tx)) => sync.waiting.push(tx),
                Some(Control::Stop(tx)) => {
                    stop_waiter = Some(tx);
                    stop_deadline = Some(Instant::now() + shared.lock_timeout);
                    match round.take() {
                        // Let the round in flight finish, bounded by lock.timeout.
                        Some(r) => {
                            let timeout = shared.lock_timeout;
                            round = Some(Box::pin(async move {
                                tokio::time::timeout(timeout, r).await.unwrap_or(RoundResult { commit: Round::LockTimeout, sync: None })
                            }));
                        }
                        None => break,
                    }
                }
                None => break,
            },
            _ = sleep_until_opt(due) => {
                let work = if shared.config.sync.is_some() { sync.take_work(Instant::now()) } else { SyncWork::None };
                round = Some(Box::pin(commit_round(shared.clone(), owner, None, work)));
            }
        }
    }

    // Final flush. The watcher stops first and may drop a batch in hand, and a
    // save made just before the stop may still be on its way: compare the
    // whole work tree with HEAD, as at start. For that check alone wait only
    // briefly for the lock: a client holding it must not delay the exit for
    // nothing.
    if let Some(w) = watcher {
        w.stop();
    }
    drain_watch_events(&shared, &mut watch_rx);
    let known = !shared.pending.lock().is_empty();
    shared.pending.lock().rescan = true;
    let budget = stop_deadline
        .map(|d| d.saturating_duration_since(Instant::now()))
        .unwrap_or(shared.lock_timeout);
    let wait = if known {
        budget
    } else {
        budget.min(Duration::from_secs(1))
    };
    let result = commit_round(shared.clone(), owner, Some(wait), SyncWork::None).await;
    settle(&shared, result.commit, &mut backoff);
    if known && !shared.pending.lock().is_empty() {
        tracing::warn!(notebook = %shared.name, "stopping with uncommitted changes; they are committed at the next start");
    }
    git_lock_manager().forget_owner(owner);
    for tx in sync.waiting.into_iter().chain(sync.in_flight) {
        let _ = tx.send(Err(SyncFailure::Failed("the notebook stopped".into())));
    }
    if let Some(tx) = caught_up {
        let _ = tx.send(());
    }
    if let Some(tx) = stop_waiter {
        let _ = tx.send(());
    }
}

/// Records a sync's outcome in status and schedules the next one; a new
/// divergence or a new sync error is announced to subscribers.
fn settle_sync(
    shared: &Shared,
    cfg: &SyncConfig,
    done: Result<SyncDone, SyncError>,
    schedule: &mut SyncSchedule,
) {
    let snapshot = |shared: &Shared| {
        shared.sync_health.lock().as_ref().map(|h| {
            (
                h.state.clone(),
                h.last_error.clone(),
                h.diverged_ref.clone(),
            )
        })
    };
    let before = snapshot(shared);
    settle_sync_state(shared, cfg, done, schedule);
    let Some((state, error, diverged_ref)) = snapshot(shared) else {
        return;
    };
    let message = match state.as_str() {
        "diverged" if before.as_ref().map(|b| b.0.as_str()) != Some("diverged") => format!(
            "local and remote history diverged; the remote side is kept at {}",
            diverged_ref
                .as_deref()
                .unwrap_or("refs/gitlockd/diverged/...")
        ),
        "error" if before.as_ref().and_then(|b| b.1.as_ref()) != error.as_ref() => {
            error.unwrap_or_default()
        }
        _ => return,
    };
    let _ = shared.events.send(NotebookEvent::Sync {
        notebook: shared.name.clone(),
        state,
        message,
    });
}

/// [`settle_sync`] without the event.
fn settle_sync_state(
    shared: &Shared,
    cfg: &SyncConfig,
    done: Result<SyncDone, SyncError>,
    schedule: &mut SyncSchedule,
) {
    let now = Instant::now();
    let mut guard = shared.sync_health.lock();
    let Some(health) = guard.as_mut() else {
        return;
    };
    match done {
        Ok(SyncDone::Full(outcome)) => {
            schedule.backoff.reset();
            let diverged = outcome.integrated == remote_sync::Integration::Diverged;
            if diverged && health.state != "diverged" {
                tracing::warn!(notebook = %shared.name, remote_ref = ?outcome.diverged_ref, "local and remote history diverged with conflicting changes; nothing in the work tree was touched. Merge the remote side by hand (under `gitlockd lock`) to resolve it");
            } else if !diverged {
                tracing::info!(notebook = %shared.name, integrated = outcome.integrated.as_str(), pushed = outcome.pushed, ahead = outcome.ahead, behind = outcome.behind, "synced");
            }
            health.state = if diverged { "diverged" } else { "ok" }.into();
            health.ahead = outcome.ahead;
            health.behind = outcome.behind;
            health.last_sync = Some(SystemTime::now());
            health.last_error = None;
            health.diverged_ref = outcome.diverged_ref.clone();
            schedule.push_due = None;
            schedule.pull_due = (!cfg.pull_interval.is_zero()).then(|| now + cfg.pull_interval);
            health.next_try = schedule.pull_due.map(|t| SystemTime::now() + (t - now));
            for tx in schedule.in_flight.drain(..) {
                let _ = tx.send(Ok(outcome.clone()));
            }
        }
        Ok(SyncDone::Push(p)) => {
            schedule.backoff.reset();
            health.ahead = p.ahead;
            health.behind = p.behind;
            if p.pushed {
                health.last_sync = Some(SystemTime::now());
                health.last_error = None;
                if health.state == "error" {
                    health.state = "ok".into();
                }
            }
            schedule.push_due = None;
            if p.behind > 0 {
                // The remote moved: integrate it (and push then) at once.
                schedule.pull_due = Some(now);
            }
        }
        Err(error) => {
            let message = error.to_string();
            if health.last_error.as_deref() != Some(message.as_str()) {
                tracing::warn!(notebook = %shared.name, error = %message, "sync failed; local commits continue, retrying with backoff");
            }
            health.state = "error".into();
            health.last_error = Some(message.clone());
            let wait = schedule.backoff.step(Duration::from_secs(300));
            schedule.push_due = None;
            schedule.pull_due = Some(now + wait);
            health.next_try = Some(SystemTime::now() + wait);
            let failure = match error {
                SyncError::Busy { .. } => SyncFailure::Conflict(message),
                _ => SyncFailure::Failed(message),
            };
            for tx in schedule.in_flight.drain(..) {
                let _ = tx.send(Err(failure.clone()));
            }
        }
    }
}

async fn sleep_until_opt(due: Option<Instant>) {
    match due {
        Some(at) => sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn drain_watch_events(shared: &Shared, rx: &mut mpsc::Receiver<WatchEvent>) {
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
    pending.due(shared.config.debounce, shared.config.max_delay)
}

fn on_watch_event(shared: &Shared, event: WatchEvent) {
    let now = Instant::now();
    match event {
        WatchEvent::Changed { paths, at } => {
            crate::fault::test_panic("loop", &paths);
            shared.pending.lock().changed(paths, at, now);
        }
        WatchEvent::Rescan { reason } => {
            // Once: nothing to show in status after the rescan.
            tracing::warn!(notebook = %shared.name, %reason, "rescanning the notebook");
            let mut pending = shared.pending.lock();
            pending.rescan = true;
            pending.touch(now);
        }
        WatchEvent::Degraded { reason } => {
            {
                let mut health = shared.health.lock();
                if health.watch_problem.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(notebook = %shared.name, %reason, "some folders are not watched; rescanning every max_delay until they are");
                }
                health.watch_problem = Some(reason);
            }
            shared.unwatched.store(true, Ordering::SeqCst);
            let mut pending = shared.pending.lock();
            pending.rescan = true;
            pending.touch(now);
        }
        WatchEvent::Restored => {
            tracing::info!(notebook = %shared.name, "every folder is watched again");
            shared.health.lock().watch_problem = None;
            shared.unwatched.store(false, Ordering::SeqCst);
            // Changes made before the watches came back made no event.
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

/// Waits for the lock, takes the batch, commits it on a blocking thread,
/// then does the round's sync work under the same hold.
async fn commit_round(
    shared: Arc<Shared>,
    owner: OwnerId,
    timeout: Option<Duration>,
    work: SyncWork,
) -> RoundResult {
    // Paused (also across a restart): the catch-up and the final flush wait
    // for `resume` too; the changes stay pending.
    if work == SyncWork::None && shared.paused.load(Ordering::SeqCst) {
        return RoundResult {
            commit: Round::Idle,
            sync: None,
        };
    }
    let guard = match shared
        .lock
        .lock_async(owner, LockMode::Exclusive, timeout)
        .await
    {
        Ok(g) => g,
        Err(_) => {
            return RoundResult {
                commit: Round::LockTimeout,
                sync: None,
            }
        }
    };
    // Taken only now: everything that arrived while we waited joins this commit.
    // With folders unwatched, every round looks at the whole tree.
    let unwatched = shared.unwatched.load(Ordering::SeqCst);
    let batch = {
        let mut pending = shared.pending.lock();
        if pending.is_empty() && work == SyncWork::None {
            return RoundResult {
                commit: Round::Idle,
                sync: None,
            };
        }
        let batch = Batch {
            paths: pending.take_paths(),
            rescan: std::mem::take(&mut pending.rescan) || unwatched,
            first_at: pending.first_at.take(),
        };
        pending.last_at = None;
        batch
    };
    let batch_first_at = batch.first_at;
    let worker = shared.clone();
    let task = tokio::task::spawn_blocking(move || {
        let _hold = guard;
        with_owner(owner, || {
            let committed = if batch.paths.is_empty() && !batch.rescan {
                Ok(AutoCommitOutcome::default())
            } else {
                commit_batch(&worker, &batch)
            };
            let sync = match (&committed, worker.config.sync.as_ref(), work) {
                (Ok(_), Some(cfg), SyncWork::Full) => Some(
                    remote_sync::sync_once(worker.git.root(), cfg, cfg.push, &worker.author)
                        .map(SyncDone::Full),
                ),
                (Ok(_), Some(cfg), SyncWork::Push) => {
                    Some(remote_sync::push_only(worker.git.root(), cfg).map(SyncDone::Push))
                }
                _ => None,
            };
            release_freed_memory();
            (committed.map_err(|e| (e, batch)), sync)
        })
    });
    let (committed, sync) = match task.await {
        Ok(result) => result,
        Err(join) => {
            // The blocking task panicked: nothing was committed, so rescan everything.
            let mut pending = shared.pending.lock();
            pending.rescan = true;
            pending.touch(Instant::now());
            return RoundResult {
                commit: Round::Retry(GitError::NotFound {
                    what: format!("internal error in the commit task: {join}"),
                }),
                sync: None,
            };
        }
    };
    let commit = match committed {
        Ok(outcome) => {
            if !outcome.failed.is_empty() {
                // Their filter failed: pending again, retried on the next
                // change or with backoff (see `settle`), never in a tight loop.
                let mut pending = shared.pending.lock();
                pending
                    .paths
                    .extend(outcome.failed.iter().map(|(p, _)| p.clone()));
                pending.touch(Instant::now());
                pending.first_at = min_instant(pending.first_at, batch_first_at);
            }
            if !outcome.recheck.is_empty() {
                // A file changed while staged: look again, but keep its first
                // pending time so max_delay still bounds how long it waits.
                let mut pending = shared.pending.lock();
                pending.paths.extend(outcome.recheck.iter().cloned());
                pending.touch(Instant::now());
                pending.first_at = min_instant(pending.first_at, batch_first_at);
            }
            Round::Done(Box::new(outcome))
        }
        Err((error, batch)) => {
            requeue(&shared, batch);
            Round::Retry(error)
        }
    };
    RoundResult { commit, sync }
}

/// Hands memory freed by a commit back to the kernel. Loading a big index
/// (100,000 entries: ~8 MiB, several copies) on a blocking thread otherwise
/// leaves that thread's malloc arena at its peak while the daemon idles.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn requeue(shared: &Shared, batch: Batch) {
    if batch.paths.is_empty() && !batch.rescan {
        return;
    }
    let mut pending = shared.pending.lock();
    pending.paths.extend(batch.paths);
    pending.rescan |= batch.rescan;
    pending.touch(Instant::now());
    pending.first_at = min_instant(pending.first_at, batch.first_at);
}

fn commit_batch(shared: &Shared, batch: &Batch) -> Result<AutoCommitOutcome, GitError> {
    let git = &shared.git;
    // A merge, rebase, ... in progress: say so before any scan. This looks at
    // a few files in .git only; conflicts in the index are caught by the commit.
    if let Ok(repo) = git2::Repository::open_ext(
        git.root(),
        git2::RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&std::ffi::OsStr>(),
    ) {
        if let Some(state) = crate::git::busy_state(repo.state()) {
            return Err(GitError::Busy {
                state: state.to_string(),
            });
        }
    }
    // Proves, after a crash mid-write, that leftover lock files are ours.
    let _marker =
        crate::recovery::WriteMarker::begin(&shared.git_dir).map_err(|source| GitError::Io {
            context: format!(
                "writing {}",
                shared.git_dir.join(crate::recovery::MARKER).display()
            ),
            source,
        })?;
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

/// Records a round's outcome (and announces a new `last_error` to
/// subscribers); returns when to retry, if a retry is needed.
fn settle(shared: &Shared, result: Round, backoff: &mut Backoff) -> Option<Instant> {
    let before = shared.health.lock().last_error.clone();
    let retry = settle_round(shared, result, backoff);
    let after = shared.health.lock().last_error.clone();
    if let Some(message) = after.filter(|m| before.as_ref() != Some(m)) {
        let _ = shared.events.send(NotebookEvent::Error {
            notebook: shared.name.clone(),
            message,
        });
    }
    retry
}

/// [`settle`] without the event.
fn settle_round(shared: &Shared, result: Round, backoff: &mut Backoff) -> Option<Instant> {
    let now = Instant::now();
    match result {
        Round::Idle => None,
        Round::Done(outcome) => {
            let mut health = shared.health.lock();
            let retry = if let Some((path, message)) = outcome.failed.first() {
                let others = match outcome.failed.len() {
                    1 => String::new(),
                    n => format!(" (and {} more)", n - 1),
                };
                let text = format!(
                    "{} not committed{others}: git add failed: {message}",
                    path.display()
                );
                if health.last_error.as_deref() != Some(text.as_str()) {
                    tracing::error!(notebook = %shared.name, error = %text, "a file could not be staged; it stays pending");
                }
                health.state = "error".into();
                health.last_error = Some(text);
                health.retry_on_change = true;
                Some(now + backoff.step(Duration::from_secs(30)))
            } else {
                backoff.reset();
                health.state = "clean".into();
                health.last_error = None;
                health.retry_on_change = false;
                None
            };
            if outcome.commit.is_some() || !outcome.git_features.is_empty() {
                health.git_features = outcome.git_features.clone();
            }
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
            track_unreadable(shared, &mut health, &outcome);
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
            retry
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
                    // Nothing tells us when the user finishes: look again shortly
                    // (a few stat calls each time, no scan).
                    Some(now + Duration::from_secs(1))
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
                    let message = error.describe();
                    if health.last_error.as_deref() != Some(message.as_str()) {
                        tracing::error!(notebook = %shared.name, error = %message, "auto-commit failed; retrying");
                    }
                    health.state = "error".into();
                    health.last_error = Some(message);
                    // A refusing hook or filter: the user's next save is the
                    // likely fix, so it retries at once; the backoff bounds
                    // retries meanwhile.
                    health.retry_on_change = matches!(error, GitError::Command { .. });
                    Some(now + backoff.step(Duration::from_secs(30)))
                }
            }
        }
    }
}

/// Updates the list of unreadable paths after a round: warns once about a
/// new one, keeps one this round did not look at while it is still
/// unreadable, and queues one that became readable (a `chown` makes no
/// event), so it is committed and leaves the list.
fn track_unreadable(shared: &Shared, health: &mut Health, outcome: &AutoCommitOutcome) {
    let mut now_unreadable = outcome.unreadable.clone();
    let previous = std::mem::take(&mut health.skipped_unreadable);
    for (path, reason) in &now_unreadable {
        if !previous.iter().any(|(p, _)| p == path) {
            tracing::warn!(notebook = %shared.name, path = %path.display(), error = %reason, "file cannot be read: it is not committed until its permissions let gitlockd read it (chmod/chown it)");
        }
    }
    let mut readable_again = Vec::new();
    for (path, reason) in previous {
        if outcome.paths.contains(&path) || now_unreadable.iter().any(|(p, _)| *p == path) {
            continue;
        }
        let full = shared.git.root().join(&path);
        let still = match std::fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() => std::fs::read_dir(&full).is_err(),
            Ok(m) if m.is_file() => std::fs::File::open(&full).is_err(),
            // Inside a folder that may not be entered.
            Err(e) => e.kind() == std::io::ErrorKind::PermissionDenied,
            Ok(_) => false,
        };
        if still {
            now_unreadable.push((path, reason));
        } else if full.exists() {
            readable_again.push(path);
        }
    }
    if !readable_again.is_empty() {
        let mut pending = shared.pending.lock();
        pending.paths.extend(readable_again);
        pending.touch(Instant::now());
    }
    now_unreadable.sort();
    now_unreadable.dedup_by(|a, b| a.0 == b.0);
    health.skipped_unreadable = now_unreadable;
}

/// RFC 3339 in UTC, second precision.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
