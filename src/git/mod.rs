//! `GitManager`: every git operation on one notebook, over git2 (libgit2).
//!
//! Each method takes the notebook's lock itself (reads shared, writes
//! exclusive) with the calling thread's [`OwnerId::current`], so a method
//! called inside a hold of the same owner re-enters instead of deadlocking,
//! and an async holder runs methods inside `spawn_blocking(move ||
//! with_owner(owner, || gm.commit(..)))`.
//!
//! A fresh [`Repository`] is opened per operation: it is cheap (~0.1 ms) and
//! always sees what other processes did meanwhile, and libgit2's cached index
//! would otherwise clobber a user's own `git add` (tech-findings §4). The one
//! thing carried over is the index gitlockd itself last wrote (`index_cache`),
//! re-read whenever the file's trailer checksum shows another writer.
//!
//! Layout: `paths` (resolve_path), `stage` (what goes into the index),
//! `stamp` (a file version's stat data, compared as git does),
//! `write` (add / commit / auto-commit / pending changes), `index` (the
//! guard around loading and writing the on-disk index), `tree` (the tree a
//! commit records), `read` (history,
//! file at a revision, diff), `message` (commit message templates),
//! `features` (what libgit2 cannot honour), `via_git`, `git_listing` and
//! `cli` (committing through the user's `git` when it cannot),
//! `tracked_ignored` (ignored files that are tracked all the same),
//! `index_cache` (the index kept between commits), `refresh` (stale stat
//! data written back at a scan).

mod cached_tree;
pub(crate) mod cli;
mod error;
pub mod features;
mod git_listing;
pub mod identity;
mod index;
mod index_cache;
mod message;
mod paths;
mod pending;
pub mod probe;
mod read;
mod refresh;
mod restore;
mod sources;
mod stage;
mod stamp;
mod tracked_ignored;
mod tree;
mod untracked;
mod via_git;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use git2::{ErrorCode, Oid, Repository, RepositoryState};

use crate::filter::PathFilter;
use crate::lock::{git_lock_manager, LockGuard, LockMode, NotebookLock, OwnerId};

pub use cli::GitProgram;
pub use error::GitError;
pub use features::GitFeature;
pub use identity::{open, Identity};
pub use message::{render_changes_message, render_message, ChangeKind, FileChange};
pub use restore::{RestoreOutcome, RestoreSource, UndoOutcome};
pub use tracked_ignored::TrackedIgnored;

/// Default wait for the notebook lock.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// Default size above which a file is not committed (the config's default).
pub const DEFAULT_MAX_FILE_SIZE: u64 = 50 * 1024 * 1024;
/// Template used by [`GitManager::commit`] when it is given an empty message.
pub const DEFAULT_MESSAGE_TEMPLATE: &str = "gitlockd: {summary}";

/// Git operations on one notebook (a folder that is a git work tree).
#[derive(Clone)]
pub struct GitManager {
    /// Canonical (symlink-resolved) notebook root: the work tree.
    root: PathBuf,
    /// The notebook's one lock, shared with every other holder.
    lock: Arc<NotebookLock>,
    /// How long a method waits for the lock before failing with `Lock`.
    lock_timeout: Duration,
    /// What `commit(.., None)` and `add_file` never stage besides git's ignores.
    filter: Arc<PathFilter>,
    /// Files larger than this are not staged by `commit` / `add_file`.
    max_file_size: u64,
    /// Author name used instead of the repository's `user.name`.
    author_name: Option<String>,
    /// Author email used instead of the repository's `user.email`.
    author_email: Option<String>,
    /// Whether `commit` runs the repository's commit hooks.
    hooks: bool,
    /// The `git` executable for repositories libgit2 cannot commit in faithfully.
    git: GitProgram,
    /// The index kept between commits, and what `status` knows about it.
    index_cache: Arc<index_cache::IndexCache>,
}

/// One commit as shown by `log`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitInfo {
    /// Commit id.
    pub id: Oid,
    /// First line of the message.
    pub summary: String,
    /// Whole message.
    pub message: String,
    /// Author name.
    pub author_name: String,
    /// Author email.
    pub author_email: String,
    /// Author time, seconds since the Unix epoch.
    pub time: i64,
    /// Author's UTC offset in minutes.
    pub offset_minutes: i32,
}

impl CommitInfo {
    /// The author time as RFC 3339 in the author's own offset,
    /// e.g. `2026-11-26T18:04:05+01:00`.
    pub fn rfc3339(&self) -> String {
        message::rfc3339(self.time, self.offset_minutes)
    }
}

/// Where HEAD points, read without taking the lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadInfo {
    /// Checked-out branch (short name); `None` when HEAD is detached.
    pub branch: Option<String>,
    /// Commit HEAD resolves to; `None` on an unborn branch.
    pub head: Option<Oid>,
    /// True when HEAD points at a commit directly.
    pub detached: bool,
}

/// Whether gitlockd may commit now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepoState {
    /// No operation in progress.
    Clean,
    /// Another git operation is in progress: "merge", "rebase", "cherry-pick",
    /// "revert", "bisect", "apply-mailbox", or "conflicts" (unmerged index entries).
    Busy(String),
}

/// Settings of one auto-commit batch (from the notebook's config).
#[derive(Clone, Debug)]
pub struct AutoCommitOptions {
    /// Notebook name, for `{notebook}` in the template.
    pub notebook: String,
    /// Subject template (`{summary}`, `{count}`, `{notebook}`, `{date}`).
    pub message: String,
    /// Author name overriding the repository's `user.name`.
    pub author_name: Option<String>,
    /// Author email overriding the repository's `user.email`.
    pub author_email: Option<String>,
    /// Files larger than this are skipped (reported in `skipped_large`).
    pub max_file_size: u64,
    /// Editor temporaries, `.git` internals and the `ignore` globs.
    pub filter: Arc<PathFilter>,
    /// Run the repository's commit hooks (the notebook's `hooks` setting).
    pub hooks: bool,
}

impl Default for AutoCommitOptions {
    fn default() -> Self {
        AutoCommitOptions {
            notebook: String::new(),
            message: DEFAULT_MESSAGE_TEMPLATE.to_string(),
            author_name: None,
            author_email: None,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            filter: Arc::new(PathFilter::default()),
            hooks: true,
        }
    }
}

/// What one auto-commit batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AutoCommitOutcome {
    /// The new commit, or `None` when nothing changed.
    pub commit: Option<Oid>,
    /// Paths whose change is in this commit (both sides of a rename).
    pub paths: Vec<PathBuf>,
    /// Files not staged because they exceed `max_file_size`, with their size.
    pub skipped_large: Vec<(PathBuf, u64)>,
    /// Files that changed while being staged: left out, to be queued again.
    pub recheck: Vec<PathBuf>,
    /// Why this batch went through `git` (e.g. "lfs filter", "commit.gpgsign");
    /// empty when libgit2 made it.
    pub git_features: Vec<String>,
    /// Files left out because git could not stage them (their filter
    /// failed), with git's message: to be committed once it works.
    pub failed: Vec<(PathBuf, String)>,
    /// Files (or folders) that could not be read, with the reason: left as
    /// they were in the index, committed once readable.
    pub unreadable: Vec<(PathBuf, String)>,
}

impl GitManager {
    /// A manager for the notebook at `root`, which must exist.
    pub fn new(root: &Path) -> Result<GitManager, GitError> {
        let root = root.canonicalize().map_err(|source| GitError::Io {
            context: format!("resolving notebook folder {}", root.display()),
            source,
        })?;
        let lock = git_lock_manager()
            .lock_for(&root)
            .map_err(|source| GitError::Io {
                context: format!("resolving notebook folder {}", root.display()),
                source,
            })?;
        Ok(GitManager {
            root,
            lock,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            filter: Arc::new(PathFilter::default()),
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            author_name: None,
            author_email: None,
            hooks: true,
            git: GitProgram::default(),
            index_cache: Arc::default(),
        })
    }

    /// Whether `commit` runs the repository's commit hooks (default true).
    pub fn with_hooks(mut self, hooks: bool) -> GitManager {
        self.hooks = hooks;
        self
    }

    /// The `git` executable (and extra environment) used when a commit
    /// needs git itself.
    pub fn with_git_program(mut self, git: GitProgram) -> GitManager {
        self.git = git;
        self
    }

    /// The repository-wide reasons commits go through `git` now (config,
    /// hooks when `hooks`); empty: libgit2 commits. Takes no lock.
    pub fn git_features(&self, hooks: bool) -> Result<Vec<GitFeature>, GitError> {
        let repo = self.open()?;
        Ok(features::detect(&repo, hooks))
    }

    /// Fails (naming the settings and the fix) when the repository needs the
    /// `git` executable for its commits and it cannot be run.
    pub fn check_git_usable(&self, hooks: bool) -> Result<(), GitError> {
        let needed = self.git_features(hooks)?;
        if needed.is_empty() {
            return Ok(());
        }
        self.git.check_usable().map_err(|e| match e {
            GitError::GitMissing {
                program, detail, ..
            } => GitError::GitMissing {
                program,
                detail,
                needed_for: needed
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            },
            other => other,
        })
    }

    /// Wait at most `t` for the notebook lock in every method.
    pub fn with_lock_timeout(mut self, t: Duration) -> GitManager {
        self.lock_timeout = t;
        self
    }

    /// The filter `commit` (without paths) and `add_file` apply.
    pub fn with_filter(mut self, filter: Arc<PathFilter>) -> GitManager {
        self.filter = filter;
        self
    }

    /// The size limit `commit` and `add_file` apply.
    pub fn with_max_file_size(mut self, max: u64) -> GitManager {
        self.max_file_size = max;
        self
    }

    /// Author used by `commit` instead of the repository's git config.
    pub fn with_author(mut self, name: Option<String>, email: Option<String>) -> GitManager {
        self.author_name = name;
        self.author_email = email;
        self
    }

    /// Canonical notebook root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The notebook's lock.
    pub fn lock(&self) -> &Arc<NotebookLock> {
        &self.lock
    }

    /// Open the repository, or create it when `init` allows; true when created.
    ///
    /// Never searches upward: a folder inside another repository is not that
    /// repository. `.git` may be a directory, a symlink to one, or a file
    /// (linked worktree). The initial branch of a new repository is
    /// `init.defaultBranch` from the user's git config, else `main`.
    pub fn init_or_get_repo(&self, init: bool) -> Result<bool, GitError> {
        // Opening an existing repository changes nothing: no lock, so a
        // notebook restarted by a reload while a client holds its lock opens.
        if self.open().is_ok() {
            return Ok(false);
        }
        let _hold = self.hold(LockMode::Exclusive)?;
        match self.open() {
            Ok(_) => Ok(false),
            Err(GitError::NotFound { .. }) if init => {
                let branch = git2::Config::open_default()
                    .and_then(|c| c.get_string("init.defaultBranch"))
                    .ok()
                    .filter(|b| !b.trim().is_empty())
                    .unwrap_or_else(|| "main".to_string());
                let mut opts = git2::RepositoryInitOptions::new();
                opts.initial_head(&branch).mkdir(false).mkpath(false);
                Repository::init_opts(&self.root, &opts).map_err(|source| GitError::Git {
                    context: format!("creating a repository in {}", self.root.display()),
                    source,
                })?;
                tracing::info!(root = %self.root.display(), %branch, "created git repository");
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether a commit may be made now. Takes no lock.
    pub fn repo_state(&self) -> Result<RepoState, GitError> {
        let repo = self.open()?;
        if let Some(state) = busy_state(repo.state()) {
            return Ok(RepoState::Busy(state.to_string()));
        }
        let conflicts = self
            .index_cache
            .has_conflicts(&repo)
            .map_err(error::git_err(&repo, "reading the index"))?;
        if conflicts {
            return Ok(RepoState::Busy("conflicts".to_string()));
        }
        Ok(RepoState::Clean)
    }

    /// Branch and commit HEAD points to. Takes no lock (status never waits).
    pub fn head_info(&self) -> Result<HeadInfo, GitError> {
        let repo = self.open()?;
        let detached = repo
            .head_detached()
            .map_err(error::git_err(&repo, "reading HEAD"))?;
        let head = repo.head();
        let info = match head {
            Ok(head) => Ok(HeadInfo {
                branch: if detached {
                    None
                } else {
                    head.shorthand().ok().map(str::to_string)
                },
                head: head.target(),
                detached,
            }),
            Err(e) if e.code() == ErrorCode::UnbornBranch => {
                let branch = repo
                    .find_reference("HEAD")
                    .ok()
                    .and_then(|r| r.symbolic_target().ok().flatten().map(str::to_string))
                    .map(|t| t.strip_prefix("refs/heads/").unwrap_or(&t).to_string());
                Ok(HeadInfo {
                    branch,
                    head: None,
                    detached: false,
                })
            }
            Err(e) => Err(error::git_err(&repo, "reading HEAD")(e)),
        };
        info
    }

    /// Take the notebook lock for the current owner (re-entering its hold).
    fn hold(&self, mode: LockMode) -> Result<LockGuard, GitError> {
        Ok(self
            .lock
            .lock_blocking(OwnerId::current(), mode, Some(self.lock_timeout))?)
    }

    /// Open the notebook's repository; never searches upward, ignores `GIT_DIR`.
    fn open(&self) -> Result<Repository, GitError> {
        let repo = open(&self.root).map_err(|source| match source.code() {
            ErrorCode::NotFound => GitError::NotFound {
                what: format!("git repository in {}", self.root.display()),
            },
            _ => GitError::Git {
                context: format!("opening the repository in {}", self.root.display()),
                source,
            },
        })?;
        if repo.workdir().is_none() {
            return Err(GitError::NotFound {
                what: format!(
                    "work tree in {} (it is a bare repository)",
                    self.root.display()
                ),
            });
        }
        Ok(repo)
    }
}

/// Stops libgit2 from caching tree objects in the process.
///
/// The cache keeps every tree under 4 KiB that an operation parsed (~8 KiB
/// each with its entries) for as long as the repository handle lives. The
/// start-up scan compares the whole index with HEAD's tree when the index's
/// cache-tree is invalid, which it is after any commit of ours (we build the
/// commit's tree from the parent's, not from the index): that kept ~6.5 MiB
/// more at the peak on 100,000 files, for no reuse (every operation opens its
/// own handle and reads each tree once). Measured: start-up peak 36.7 ->
/// 30.0 MiB, CPU unchanged. Call before any thread starts.
pub fn stop_caching_trees() {
    // SAFETY: sets a libgit2 global; the caller runs before any other thread.
    if let Err(e) = unsafe { git2::opts::set_cache_object_limit(git2::ObjectType::Tree, 0) } {
        tracing::debug!(error = %e, "cannot limit libgit2's tree cache");
    }
}

/// The name of the operation in progress, if any.
pub(crate) fn busy_state(state: RepositoryState) -> Option<&'static str> {
    match state {
        RepositoryState::Clean => None,
        RepositoryState::Merge => Some("merge"),
        RepositoryState::Revert | RepositoryState::RevertSequence => Some("revert"),
        RepositoryState::CherryPick | RepositoryState::CherryPickSequence => Some("cherry-pick"),
        RepositoryState::Bisect => Some("bisect"),
        RepositoryState::Rebase
        | RepositoryState::RebaseInteractive
        | RepositoryState::RebaseMerge => Some("rebase"),
        RepositoryState::ApplyMailbox | RepositoryState::ApplyMailboxOrRebase => {
            Some("apply-mailbox")
        }
    }
}
