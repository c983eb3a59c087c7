//! One notebook's runtime: its pending changes, pause switch, repository
//! state, and the loop that turns file events into auto-commits.
//!
//! The loop owns no git object: each commit round waits for the notebook
//! lock in the FIFO queue (behind socket clients), takes the batch of pending
//! paths only once it holds the lock, and runs git on a blocking thread bound
//! to its owner. Anything that stops a round (a merge in progress, another
//! process's `index.lock`, a lock timeout, an error) puts the batch back, so
//! no change is ever dropped.
//!
//! Parts: this file (start-up, pause, the public API), `run` (the loop and
//! its watcher), `round` (one commit round and how it settles), `status`
//! (health records and the typed status entry), `sync_schedule` (the sync timer),
//! `schedule` (the pure pending-set and timing rules).

mod round;
mod run;
mod schedule;
mod status;
mod sync_schedule;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::config::NotebookConfig;
use crate::filter::PathFilter;
use crate::git::{probe, AutoCommitOptions, GitError, GitManager};
use crate::lock::{git_lock_manager, NotebookLock, OwnerId};
use crate::sync::{self as remote_sync, SyncOutcome};
use run::{supervise, WatchSetup};
use schedule::Pending;
use status::{Health, LastCommit, SyncHealth};

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

impl StartError {
    /// The reason without the "notebook NAME: " prefix, for a caller that
    /// names the notebook itself (saying it twice reads as a stutter).
    pub fn reason(&self) -> String {
        match self {
            StartError::Git { source, .. } => source.to_string(),
            StartError::Filter { source, .. } => source.to_string(),
            StartError::Create { path, source, .. } => {
                format!("cannot create {}: {source}", path.display())
            }
            StartError::Task { message, .. } => format!("start-up task failed: {message}"),
        }
    }
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
            let dirs = probe::repo_dirs(git.root()).map_err(|source| StartError::Git {
                name: name.clone(),
                source,
            })?;
            let git_dir = dirs.git_dir.clone();
            let removed = probe::recover_interrupted_write(&dirs);
            if !removed.is_empty() {
                tracing::warn!(notebook = %name, count = removed.len(), "recovered from an interrupted write of a previous gitlockd");
            }
            // Before the catch-up commit: files a sync's checkout cut short by
            // a crash had unlinked must not be committed as deletions. Not
            // while a live gitlockd's marker is still there.
            if !probe::write_in_progress(&git_dir) {
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

/// RFC 3339 in UTC, second precision.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
