//! The sync engine: fetch, integrate and push one notebook through a git remote.
//!
//! # Contract
//!
//! * **Precondition (the caller's job):** the caller holds the notebook's
//!   *exclusive* lock for the whole call and has already committed pending
//!   local changes. This module takes no lock itself. It still re-checks
//!   the work tree before it changes anything: it never overwrites a
//!   modified tracked file, an untracked file or an ignored file (see
//!   [`SyncError::Blocked`]).
//! * **Network work** (fetch, push, ls-remote) runs through the user's own
//!   `git` executable as a subprocess, so the user's ssh config, agent and
//!   credential helpers work as in a terminal. The subprocess inherits this
//!   process's environment plus [`GitCli::env`], with `GIT_TERMINAL_PROMPT=0`,
//!   stdin at `/dev/null`, in its own session (no controlling terminal, so
//!   ssh cannot prompt either), and is killed (its whole process group) after
//!   [`GitCli::timeout`]. `GIT_SSH_COMMAND` is left untouched. Its output
//!   goes to unlinked temporary files, not pipes, so an ssh `ControlPersist`
//!   master that keeps stderr open cannot hang us.
//! * **Everything local** (ancestry, merge, checkout, refs) is in-process
//!   through git2.
//!
//! # Integration
//!
//! Local branch = the checked-out branch; remote branch = `cfg.branch` or the
//! local branch's name. The fetch uses an explicit refspec
//! `+refs/heads/<branch>:refs/remotes/<remote>/<branch>` (the remote's
//! configured refspec is not relied on). Then, with `L` = local tip and `R` =
//! remote tip:
//!
//! | case | result | what is written |
//! |---|---|---|
//! | `R` absent on the remote, `R == L`, `R` ancestor of `L` | [`Integration::UpToDate`] | nothing |
//! | `L` ancestor of `R` (or `L` unborn) | [`Integration::FastForward`] | SAFE checkout of `R`'s tree, then the branch ref (compare-and-swap) |
//! | both moved, clean in-memory merge | [`Integration::Merged`] | merge commit (parents `L`, `R`), SAFE checkout, then the branch ref |
//! | both moved, conflicts or no merge base | [`Integration::Diverged`] | only `refs/gitlockd/diverged/<remote>/<branch>` → `R` |
//!
//! The work tree is always updated *before* the branch moves: a crash in
//! between leaves a work tree that the next auto-commit records as a local
//! commit whose tree equals the remote's, which merges trivially. The
//! opposite order would let an auto-commit revert the remote's changes.
//!
//! Never a force push, never a rewrite of history, never conflict markers in
//! a commit: a conflicted merge is dropped from memory and nothing of it is
//! written. The push sends the exact commit that was integrated
//! (`git push <remote> <oid>:refs/heads/<branch>`), never `--force`; on
//! success the remote-tracking ref is set to it.
//!
//! When the user resolves a divergence by hand (merges the diverged ref and
//! commits), the next sync finds `R` an ancestor of `L`, pushes, and deletes
//! the diverged ref once the commit it records is an ancestor of `L`. A
//! diverged ref whose commit is not in `L` is never deleted.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use git2::{
    CheckoutNotificationType, ErrorCode, MergeOptions, Oid, Repository, RepositoryOpenFlags,
    Signature, StatusOptions, Tree,
};

use crate::config::SyncConfig;

/// Default limit for one `git fetch` / `git push` / `git ls-remote`.
pub const DEFAULT_GIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Prefix of the refs that keep the remote side of a divergence reachable.
pub const DIVERGED_REF_PREFIX: &str = "refs/gitlockd/diverged/";

/// Stderr kept for an error message (the tail).
const MAX_STDERR: u64 = 16 * 1024;

/// How the `git` subprocess is run.
#[derive(Clone, Debug)]
pub struct GitCli {
    /// The git executable (`git`, looked up in `PATH`).
    pub program: OsString,
    /// Variables set for the subprocess on top of the inherited environment
    /// (tests use this for an isolated `HOME` / `GIT_CONFIG_GLOBAL`, which
    /// is thread-safe where `std::env::set_var` is not).
    pub env: Vec<(OsString, OsString)>,
    /// The subprocess (and its process group) is killed after this.
    pub timeout: Duration,
}

impl Default for GitCli {
    fn default() -> Self {
        GitCli {
            program: OsString::from("git"),
            env: Vec::new(),
            timeout: DEFAULT_GIT_TIMEOUT,
        }
    }
}

/// How remote work was brought into the local branch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Integration {
    /// Nothing to integrate (the remote has nothing the local branch lacks).
    UpToDate,
    /// The local branch moved forward to the remote tip.
    FastForward,
    /// A merge commit joins both sides.
    Merged,
    /// Both sides moved and could not be merged cleanly: nothing changed
    /// locally; the remote tip is kept at [`SyncOutcome::diverged_ref`].
    Diverged,
}

impl Integration {
    /// The wire name: `"up_to_date"`, `"fast_forward"`, `"merged"`, `"diverged"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Integration::UpToDate => "up_to_date",
            Integration::FastForward => "fast_forward",
            Integration::Merged => "merged",
            Integration::Diverged => "diverged",
        }
    }
}

impl std::fmt::Display for Integration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one [`sync_once`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncOutcome {
    /// The local branch (short name).
    pub branch: String,
    /// The remote branch (short name).
    pub remote_branch: String,
    /// The fetch brought something new (the remote-tracking ref moved).
    pub fetched: bool,
    /// How the remote side was integrated.
    pub integrated: Integration,
    /// A push happened and succeeded.
    pub pushed: bool,
    /// Local commits the remote lacks (after the push).
    pub ahead: usize,
    /// Remote commits the local branch lacks.
    pub behind: usize,
    /// The diverged ref when it exists after this sync (always `Some` when
    /// `integrated` is `Diverged`; may also be `Some` otherwise when an old
    /// divergence's commit is still not part of the local branch).
    pub diverged_ref: Option<String>,
    /// The local tip after the sync (`None`: unborn branch).
    pub head: Option<Oid>,
}

/// What [`push_only`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushOutcome {
    /// A push happened and succeeded.
    pub pushed: bool,
    /// Local commits the remote lacks (after the push).
    pub ahead: usize,
    /// Remote commits (as last fetched) the local branch lacks. When > 0
    /// nothing was pushed: a push would be rejected; run [`sync_once`].
    pub behind: usize,
}

/// The sync picture from local refs only (no network), for `status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalState {
    /// The local branch (short name).
    pub branch: String,
    /// The remote branch (short name).
    pub remote_branch: String,
    /// Local commits the last-fetched remote tip lacks.
    pub ahead: usize,
    /// Commits of the last-fetched remote tip the local branch lacks.
    pub behind: usize,
    /// The diverged ref, when it exists.
    pub diverged_ref: Option<String>,
}

/// Why a sync failed. Nothing local was changed unless the variant says so.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The repository is mid-merge/rebase/... or has unmerged index entries.
    #[error("the repository is busy: {state} in progress; sync waits until it is finished")]
    Busy {
        /// "merge", "rebase", "cherry-pick", "revert", "bisect",
        /// "apply-mailbox" or "conflicts".
        state: String,
    },
    /// Another git process holds the index lock (or HEAD's or the branch's).
    #[error("{} exists: another git process is working on this repository", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// HEAD is not on a branch.
    #[error("HEAD is detached: sync needs a checked-out branch")]
    Detached,
    /// The configured remote does not exist in the repository.
    #[error("no remote named {remote:?} in this repository")]
    NoRemote {
        /// The configured remote.
        remote: String,
    },
    /// A remote or branch name git would not accept (or that looks like an option).
    #[error("invalid {what} name {name:?}")]
    InvalidName {
        /// "remote" or "branch".
        what: &'static str,
        /// The name.
        name: String,
    },
    /// `git fetch` failed (unreachable remote, authentication, ...).
    #[error("fetching from {remote} failed: {stderr}")]
    Fetch {
        /// The remote.
        remote: String,
        /// git's message.
        stderr: String,
    },
    /// `git push` failed. `rejected`: the remote has commits we lack
    /// (non-fast-forward); the next sync integrates them and pushes again.
    #[error("pushing to {remote} failed{}: {stderr}", if *.rejected { " (rejected: the remote has new commits)" } else { "" })]
    Push {
        /// The remote.
        remote: String,
        /// git's message.
        stderr: String,
        /// Non-fast-forward rejection.
        rejected: bool,
    },
    /// Updating the work tree would overwrite these files (uncommitted
    /// changes to tracked files, untracked or ignored files in the way).
    /// Nothing was changed; the remote tip stays at the remote-tracking ref.
    #[error("updating the work tree would overwrite {}", display_paths(paths))]
    Blocked {
        /// The files in the way, relative to the notebook root.
        paths: Vec<PathBuf>,
    },
    /// The git subprocess did not finish in time and was killed.
    #[error("`git {command}` did not finish within {}s and was killed", after.as_secs())]
    Timeout {
        /// The git subcommand ("fetch", "push", "ls-remote").
        command: String,
        /// The limit.
        after: Duration,
    },
    /// A libgit2 failure.
    #[error("{context}: {source}")]
    Git {
        /// What was being done.
        context: String,
        /// libgit2's error.
        #[source]
        source: git2::Error,
    },
    /// A filesystem or process failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl SyncError {
    /// True for failures a later retry may fix by itself (network, rejected
    /// push, busy repository, lock file, timeout).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SyncError::Busy { .. }
                | SyncError::Locked { .. }
                | SyncError::Fetch { .. }
                | SyncError::Push { .. }
                | SyncError::Timeout { .. }
        )
    }
}

fn display_paths(paths: &[PathBuf]) -> String {
    const SHOWN: usize = 5;
    let mut s = paths
        .iter()
        .take(SHOWN)
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > SHOWN {
        s.push_str(&format!(" and {} more", paths.len() - SHOWN));
    }
    s
}

fn git_err(context: impl Into<String>) -> impl FnOnce(git2::Error) -> SyncError {
    let context = context.into();
    move |source| SyncError::Git { context, source }
}

/// The diverged ref for `remote` / `branch`: `refs/gitlockd/diverged/<remote>/<branch>`.
pub fn diverged_ref_name(remote: &str, branch: &str) -> String {
    format!("{DIVERGED_REF_PREFIX}{remote}/{branch}")
}

/// Fetch, integrate and (when `push` and there is something to push) push,
/// with the default [`GitCli`]. See the module docs for the precondition.
pub fn sync_once(root: &Path, cfg: &SyncConfig, push: bool) -> Result<SyncOutcome, SyncError> {
    sync_once_with(root, cfg, push, &GitCli::default())
}

/// [`sync_once`] with an explicit [`GitCli`].
///
/// `push` decides alone whether to push (pass `cfg.push` for scheduled syncs,
/// `true` for an explicit `gitlockd sync`). No push happens when the result
/// is `Diverged`. A rejected push is `Err(Push { rejected: true })`; the
/// integration done before it stays (it is local and complete).
pub fn sync_once_with(
    root: &Path,
    cfg: &SyncConfig,
    push: bool,
    git: &GitCli,
) -> Result<SyncOutcome, SyncError> {
    let repo = open(root)?;
    let t = target(&repo, cfg)?;
    check_clean(&repo)?;
    let tracked_before = ref_oid(&repo, &t.tracking_ref)?;
    let workdir = workdir(&repo)?;
    drop(repo);

    let remote_tip = fetch(&workdir, git, &t)?;

    // Reopen: a fresh handle sees the fetched packs and refs.
    let repo = open(root)?;
    let t2 = target(&repo, cfg)?;
    if t2.local_ref != t.local_ref {
        return Err(SyncError::Busy {
            state: "branch switch".to_string(),
        });
    }
    check_clean(&repo)?;
    check_ref_locks(&repo, &t)?;
    let fetched = remote_tip.is_some() && remote_tip != tracked_before;
    let local = ref_oid(&repo, &t.local_ref)?;

    let integrated = integrate(&repo, &t, local, remote_tip)?;
    let head = ref_oid(&repo, &t.local_ref)?;
    let diverged_ref = match (integrated, remote_tip) {
        (Integration::Diverged, Some(r)) => {
            repo.reference(&t.diverged_ref, r, true, "gitlockd sync: diverged")
                .map_err(git_err(format!("writing {}", t.diverged_ref)))?;
            Some(t.diverged_ref.clone())
        }
        _ => clean_diverged_ref(&repo, &t, head)?,
    };

    let (mut ahead, behind) = counts(&repo, head, remote_tip)?;
    let mut pushed = false;
    if push && integrated != Integration::Diverged && ahead > 0 && behind == 0 {
        if let Some(h) = head {
            push_commit(&repo, &workdir, git, &t, h)?;
            pushed = true;
            ahead = 0;
        }
    }
    Ok(SyncOutcome {
        branch: t.local_branch,
        remote_branch: t.remote_branch,
        fetched,
        integrated,
        pushed,
        ahead,
        behind,
        diverged_ref,
        head,
    })
}

/// Push local commits the last-fetched remote tip lacks, without fetching
/// (after auto-commits), with the default [`GitCli`].
pub fn push_only(root: &Path, cfg: &SyncConfig) -> Result<PushOutcome, SyncError> {
    push_only_with(root, cfg, &GitCli::default())
}

/// [`push_only`] with an explicit [`GitCli`].
///
/// Pushes nothing when `ahead == 0`, or when `behind > 0` (the local branch
/// lacks fetched remote commits, so a push would be rejected: run
/// [`sync_once`]). A push rejected because the remote moved since the last
/// fetch is `Err(Push { rejected: true })`. Does not check the repository
/// state: a push does not touch the work tree.
pub fn push_only_with(
    root: &Path,
    cfg: &SyncConfig,
    git: &GitCli,
) -> Result<PushOutcome, SyncError> {
    let repo = open(root)?;
    let t = target(&repo, cfg)?;
    let head = ref_oid(&repo, &t.local_ref)?;
    let remote_tip = ref_oid(&repo, &t.tracking_ref)?;
    let (ahead, behind) = counts(&repo, head, remote_tip)?;
    let workdir = workdir(&repo)?;
    match head {
        Some(h) if ahead > 0 && behind == 0 => {
            push_commit(&repo, &workdir, git, &t, h)?;
            Ok(PushOutcome {
                pushed: true,
                ahead: 0,
                behind,
            })
        }
        _ => Ok(PushOutcome {
            pushed: false,
            ahead,
            behind,
        }),
    }
}

/// Ahead/behind of the local branch against the last-fetched remote-tracking
/// ref; no network. Without a remote-tracking ref every local commit counts
/// as ahead.
pub fn ahead_behind(root: &Path, cfg: &SyncConfig) -> Result<(usize, usize), SyncError> {
    let s = local_state(root, cfg)?;
    Ok((s.ahead, s.behind))
}

/// Branches, ahead/behind and the diverged ref from local refs only.
pub fn local_state(root: &Path, cfg: &SyncConfig) -> Result<LocalState, SyncError> {
    let repo = open(root)?;
    let t = target(&repo, cfg)?;
    let head = ref_oid(&repo, &t.local_ref)?;
    let remote_tip = ref_oid(&repo, &t.tracking_ref)?;
    let (ahead, behind) = counts(&repo, head, remote_tip)?;
    let diverged_ref = ref_oid(&repo, &t.diverged_ref)?.map(|_| t.diverged_ref.clone());
    Ok(LocalState {
        branch: t.local_branch,
        remote_branch: t.remote_branch,
        ahead,
        behind,
        diverged_ref,
    })
}

// ---------------------------------------------------------------------------
// Local side (git2)

/// Names involved in one sync.
struct Target {
    /// `refs/heads/<local>`.
    local_ref: String,
    local_branch: String,
    remote: String,
    remote_branch: String,
    /// `refs/remotes/<remote>/<remote_branch>`.
    tracking_ref: String,
    /// `refs/gitlockd/diverged/<remote>/<remote_branch>`.
    diverged_ref: String,
}

fn open(root: &Path) -> Result<Repository, SyncError> {
    let repo = Repository::open_ext(
        root,
        RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&OsStr>(),
    )
    .map_err(git_err(format!(
        "opening the repository at {}",
        root.display()
    )))?;
    if repo.is_bare() {
        return Err(SyncError::Git {
            context: format!("opening {}", root.display()),
            source: git2::Error::from_str("the repository is bare; a notebook needs a work tree"),
        });
    }
    Ok(repo)
}

fn workdir(repo: &Repository) -> Result<PathBuf, SyncError> {
    repo.workdir()
        .map(Path::to_path_buf)
        .ok_or_else(|| SyncError::Git {
            context: "finding the work tree".to_string(),
            source: git2::Error::from_str("the repository has no work tree"),
        })
}

fn target(repo: &Repository, cfg: &SyncConfig) -> Result<Target, SyncError> {
    let head = repo
        .find_reference("HEAD")
        .map_err(git_err("reading HEAD"))?;
    let local_ref = match head.symbolic_target().ok().flatten() {
        Some(t) if t.starts_with("refs/heads/") => t.to_string(),
        _ => return Err(SyncError::Detached),
    };
    let local_branch = local_ref["refs/heads/".len()..].to_string();
    let remote_branch = cfg.branch.clone().unwrap_or_else(|| local_branch.clone());
    let remote = cfg.remote.clone();
    if remote.is_empty()
        || remote.starts_with('-')
        || !git2::Reference::is_valid_name(&format!("refs/remotes/{remote}/x"))
    {
        return Err(SyncError::InvalidName {
            what: "remote",
            name: remote,
        });
    }
    if remote_branch.starts_with('-')
        || !git2::Branch::name_is_valid(&remote_branch).unwrap_or(false)
    {
        return Err(SyncError::InvalidName {
            what: "branch",
            name: remote_branch,
        });
    }
    match repo.find_remote(&remote) {
        Ok(_) => {}
        Err(e) if e.code() == ErrorCode::NotFound || e.code() == ErrorCode::InvalidSpec => {
            return Err(SyncError::NoRemote { remote });
        }
        Err(e) => return Err(git_err(format!("reading remote {remote}"))(e)),
    }
    Ok(Target {
        tracking_ref: format!("refs/remotes/{remote}/{remote_branch}"),
        diverged_ref: diverged_ref_name(&remote, &remote_branch),
        local_ref,
        local_branch,
        remote,
        remote_branch,
    })
}

fn check_clean(repo: &Repository) -> Result<(), SyncError> {
    if let Some(state) = crate::git::busy_state(repo.state()) {
        return Err(SyncError::Busy {
            state: state.to_string(),
        });
    }
    let lock = repo.path().join("index.lock");
    if lock.exists() {
        return Err(SyncError::Locked { path: lock });
    }
    let index = repo.index().map_err(git_err("reading the index"))?;
    if index.has_conflicts() {
        return Err(SyncError::Busy {
            state: "conflicts".to_string(),
        });
    }
    Ok(())
}

/// Lock files of HEAD and of the branch: checked before the work tree is
/// updated, so that moving the branch afterwards is unlikely to fail.
fn check_ref_locks(repo: &Repository, t: &Target) -> Result<(), SyncError> {
    for lock in [
        repo.path().join("HEAD.lock"),
        repo.commondir().join(format!("{}.lock", t.local_ref)),
    ] {
        if lock.exists() {
            return Err(SyncError::Locked { path: lock });
        }
    }
    Ok(())
}

fn ref_oid(repo: &Repository, name: &str) -> Result<Option<Oid>, SyncError> {
    match repo.refname_to_id(name) {
        Ok(id) => Ok(Some(id)),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(git_err(format!("reading {name}"))(e)),
    }
}

/// `ancestor` is `descendant` or one of its ancestors.
fn contains(repo: &Repository, descendant: Oid, ancestor: Oid) -> Result<bool, SyncError> {
    if descendant == ancestor {
        return Ok(true);
    }
    repo.graph_descendant_of(descendant, ancestor)
        .map_err(git_err("computing ancestry"))
}

fn count_commits(repo: &Repository, tip: Oid) -> Result<usize, SyncError> {
    let mut walk = repo.revwalk().map_err(git_err("counting commits"))?;
    walk.push(tip).map_err(git_err("counting commits"))?;
    let mut n = 0;
    for id in walk {
        id.map_err(git_err("counting commits"))?;
        n += 1;
    }
    Ok(n)
}

fn counts(
    repo: &Repository,
    local: Option<Oid>,
    remote: Option<Oid>,
) -> Result<(usize, usize), SyncError> {
    match (local, remote) {
        (Some(l), Some(r)) => repo
            .graph_ahead_behind(l, r)
            .map_err(git_err("computing ahead/behind")),
        (Some(l), None) => Ok((count_commits(repo, l)?, 0)),
        (None, Some(r)) => Ok((0, count_commits(repo, r)?)),
        (None, None) => Ok((0, 0)),
    }
}

fn integrate(
    repo: &Repository,
    t: &Target,
    local: Option<Oid>,
    remote: Option<Oid>,
) -> Result<Integration, SyncError> {
    let Some(remote) = remote else {
        return Ok(Integration::UpToDate);
    };
    let Some(local) = local else {
        // Unborn local branch: take the remote's history as it is.
        let to = commit_tree(repo, remote)?;
        safe_checkout(repo, None, &to)?;
        repo.reference(
            &t.local_ref,
            remote,
            false,
            &format!(
                "gitlockd sync: fast-forward to {}/{}",
                t.remote, t.remote_branch
            ),
        )
        .map_err(git_err(format!("creating {}", t.local_ref)))?;
        return Ok(Integration::FastForward);
    };
    if contains(repo, local, remote)? {
        return Ok(Integration::UpToDate);
    }
    let from = commit_tree(repo, local)?;
    if contains(repo, remote, local)? {
        let to = commit_tree(repo, remote)?;
        safe_checkout(repo, Some(&from), &to)?;
        move_branch(
            repo,
            t,
            remote,
            local,
            &format!(
                "gitlockd sync: fast-forward to {}/{}",
                t.remote, t.remote_branch
            ),
        )?;
        return Ok(Integration::FastForward);
    }
    // Both moved. Unrelated histories are never merged automatically.
    match repo.merge_base(local, remote) {
        Ok(_) => {}
        Err(e) if e.code() == ErrorCode::NotFound => return Ok(Integration::Diverged),
        Err(e) => return Err(git_err("finding the merge base")(e)),
    }
    let local_c = repo
        .find_commit(local)
        .map_err(git_err("reading the local tip"))?;
    let remote_c = repo
        .find_commit(remote)
        .map_err(git_err("reading the remote tip"))?;
    let mut index = repo
        .merge_commits(&local_c, &remote_c, Some(&MergeOptions::new()))
        .map_err(git_err("merging in memory"))?;
    if index.has_conflicts() {
        return Ok(Integration::Diverged);
    }
    // Belt and braces: only stage-0 entries may go into a tree.
    if index.iter().any(|e| (e.flags >> 12) & 0x3 != 0) {
        return Ok(Integration::Diverged);
    }
    let tree_id = index
        .write_tree_to(repo)
        .map_err(git_err("writing the merged tree"))?;
    let tree = repo
        .find_tree(tree_id)
        .map_err(git_err("reading the merged tree"))?;
    let sig = signature(repo)?;
    let message = format!("gitlockd: merge {}/{}", t.remote, t.remote_branch);
    let merge = repo
        .commit(None, &sig, &sig, &message, &tree, &[&local_c, &remote_c])
        .map_err(git_err("creating the merge commit"))?;
    safe_checkout(repo, Some(&from), &tree)?;
    move_branch(
        repo,
        t,
        merge,
        local,
        &format!("gitlockd sync: merge {}/{}", t.remote, t.remote_branch),
    )?;
    Ok(Integration::Merged)
}

fn commit_tree(repo: &Repository, id: Oid) -> Result<Tree<'_>, SyncError> {
    repo.find_commit(id)
        .and_then(|c| c.tree())
        .map_err(git_err(format!("reading the tree of {id}")))
}

/// Move the branch from `old` to `new` (fails when someone else moved it).
fn move_branch(
    repo: &Repository,
    t: &Target,
    new: Oid,
    old: Oid,
    msg: &str,
) -> Result<(), SyncError> {
    repo.reference_matching(&t.local_ref, new, true, old, msg)
        .map_err(git_err(format!(
            "moving {} to {new} (the work tree already matches {new}; the branch moved meanwhile)",
            t.local_ref
        )))?;
    Ok(())
}

/// Update the index and work tree from `from` (HEAD's tree, `None` when
/// unborn) to `to` without losing anything: refuse (changing nothing) when
/// a tracked file that differs from HEAD would be touched, or when an
/// untracked or ignored file is in the way.
fn safe_checkout(
    repo: &Repository,
    from: Option<&Tree<'_>>,
    to: &Tree<'_>,
) -> Result<(), SyncError> {
    // 1. Uncommitted changes (index or work tree) to tracked files the update touches.
    let mut opts = StatusOptions::new();
    opts.include_untracked(false)
        .include_ignored(false)
        .exclude_submodules(true);
    let statuses = repo
        .statuses(Some(&mut opts))
        .map_err(git_err("reading status"))?;
    let dirty: std::collections::HashSet<PathBuf> = statuses
        .iter()
        .filter(|s| !s.status().is_empty() && !s.status().is_ignored())
        .map(|s| PathBuf::from(OsStr::from_bytes(s.path_bytes())))
        .collect();
    if !dirty.is_empty() {
        let diff = repo
            .diff_tree_to_tree(from, Some(to), None)
            .map_err(git_err("comparing trees"))?;
        let mut blocked: Vec<PathBuf> = Vec::new();
        for d in diff.deltas() {
            for p in [d.old_file().path(), d.new_file().path()]
                .into_iter()
                .flatten()
            {
                let touched_dirty = dirty
                    .iter()
                    .any(|x| x == p || x.starts_with(p) || p.starts_with(x));
                if touched_dirty && !blocked.iter().any(|b| b == p) {
                    blocked.push(p.to_path_buf());
                }
            }
        }
        if !blocked.is_empty() {
            return Err(SyncError::Blocked { paths: blocked });
        }
    }

    // 2. SAFE checkout: libgit2 computes every action first and cancels
    // before writing anything when a file is in the way.
    let conflicts = std::rc::Rc::new(std::cell::RefCell::new(Vec::<PathBuf>::new()));
    let seen = conflicts.clone();
    let mut cb = git2::build::CheckoutBuilder::new();
    cb.safe()
        .overwrite_ignored(false)
        .remove_untracked(false)
        .remove_ignored(false)
        .allow_conflicts(false)
        .recreate_missing(false)
        .notify_on(CheckoutNotificationType::CONFLICT)
        .notify(move |_, path, _, _, _| {
            if let Some(p) = path {
                seen.borrow_mut().push(p.to_path_buf());
            }
            true
        });
    match repo.checkout_tree(to.as_object(), Some(&mut cb)) {
        Ok(()) => Ok(()),
        Err(e) if e.code() == ErrorCode::Conflict || !conflicts.borrow().is_empty() => {
            let mut paths = conflicts.borrow().clone();
            paths.dedup();
            Err(SyncError::Blocked { paths })
        }
        Err(e) => Err(git_err("updating the work tree")(e)),
    }
}

/// Delete the diverged ref once the commit it keeps is part of `head`.
fn clean_diverged_ref(
    repo: &Repository,
    t: &Target,
    head: Option<Oid>,
) -> Result<Option<String>, SyncError> {
    let Some(kept) = ref_oid(repo, &t.diverged_ref)? else {
        return Ok(None);
    };
    let resolved = match head {
        Some(h) => repo.find_commit(kept).is_ok() && contains(repo, h, kept)?,
        None => false,
    };
    if !resolved {
        return Ok(Some(t.diverged_ref.clone()));
    }
    let mut r = repo
        .find_reference(&t.diverged_ref)
        .map_err(git_err(format!("reading {}", t.diverged_ref)))?;
    r.delete()
        .map_err(git_err(format!("deleting {}", t.diverged_ref)))?;
    Ok(None)
}

fn signature(repo: &Repository) -> Result<Signature<'static>, SyncError> {
    match repo.signature() {
        Ok(s) => Ok(s.to_owned()),
        Err(_) => {
            Signature::now("gitlockd", "gitlockd@localhost").map_err(git_err("making a signature"))
        }
    }
}

// ---------------------------------------------------------------------------
// Network side (the git CLI)

/// Fetch the remote branch into the remote-tracking ref; its new tip, or
/// `None` when the remote has no such branch.
fn fetch(workdir: &Path, git: &GitCli, t: &Target) -> Result<Option<Oid>, SyncError> {
    let refspec = format!("+refs/heads/{}:{}", t.remote_branch, t.tracking_ref);
    let out = run_git(
        workdir,
        git,
        "fetch",
        &["--quiet", "--no-recurse-submodules", &t.remote, &refspec],
    )?;
    if out.status.success() {
        let repo = open(workdir)?;
        return match ref_oid(&repo, &t.tracking_ref)? {
            Some(id) => Ok(Some(id)),
            None => Err(SyncError::Fetch {
                remote: t.remote.clone(),
                stderr: format!("git fetch succeeded but {} is missing", t.tracking_ref),
            }),
        };
    }
    // Failed: a missing remote branch (exit 2 of ls-remote --exit-code) is
    // not an error (the first push creates it); anything else is.
    let probe = run_git(
        workdir,
        git,
        "ls-remote",
        &[
            "--exit-code",
            "--heads",
            &t.remote,
            &format!("refs/heads/{}", t.remote_branch),
        ],
    )?;
    if probe.status.code() == Some(2) {
        return Ok(None);
    }
    Err(SyncError::Fetch {
        remote: t.remote.clone(),
        stderr: out.message(),
    })
}

fn push_commit(
    repo: &Repository,
    workdir: &Path,
    git: &GitCli,
    t: &Target,
    commit: Oid,
) -> Result<(), SyncError> {
    let refspec = format!("{commit}:refs/heads/{}", t.remote_branch);
    let out = run_git(workdir, git, "push", &["--porcelain", &t.remote, &refspec])?;
    if !out.status.success() {
        // Porcelain lines: `<flag>\t<from>:<to>\t<summary> (<reason>)`; `!`
        // is a failure, `[rejected]` a non-fast-forward one (as opposed to
        // `[remote rejected]`, a hook or a protected branch).
        let rejected = out.stdout.lines().any(|l| {
            let mut f = l.split('\t');
            f.next() == Some("!") && f.nth(1).is_some_and(|s| s.starts_with("[rejected]"))
        });
        let mut msg = out.message();
        for l in out.stdout.lines().filter(|l| l.starts_with('!')) {
            msg.push('\n');
            msg.push_str(l.trim());
        }
        return Err(SyncError::Push {
            remote: t.remote.clone(),
            stderr: msg.trim().to_string(),
            rejected,
        });
    }
    repo.reference(&t.tracking_ref, commit, true, "gitlockd sync: push")
        .map_err(git_err(format!("updating {}", t.tracking_ref)))?;
    Ok(())
}

struct GitOutput {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl GitOutput {
    fn message(&self) -> String {
        let s = self.stderr.trim();
        if s.is_empty() {
            format!("git exited with {}", self.status)
        } else {
            s.to_string()
        }
    }
}

/// An unlinked temporary file for a subprocess's output.
fn capture_file() -> Result<File, SyncError> {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir();
    for _ in 0..16 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = dir.join(format!(
            ".gitlockd-sync-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut o = std::fs::OpenOptions::new();
        o.read(true).write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        match o.open(&path) {
            Ok(f) => {
                let _ = std::fs::remove_file(&path);
                return Ok(f);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(SyncError::Io {
                    context: format!("creating a temporary file in {}", dir.display()),
                    source,
                })
            }
        }
    }
    Err(SyncError::Io {
        context: format!("creating a temporary file in {}", dir.display()),
        source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
    })
}

fn read_tail(f: &mut File, max: u64) -> String {
    let len = f.seek(SeekFrom::End(0)).unwrap_or(0);
    let start = len.saturating_sub(max);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.take(max).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Run `git <sub> <args>` in `workdir`, no prompt, killed after the timeout.
fn run_git(workdir: &Path, git: &GitCli, sub: &str, args: &[&str]) -> Result<GitOutput, SyncError> {
    let io = |context: String| move |source| SyncError::Io { context, source };
    let mut out_f = capture_file()?;
    let mut err_f = capture_file()?;
    let mut cmd = Command::new(&git.program);
    cmd.arg(sub)
        .args(args)
        .current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(
            out_f.try_clone().map_err(io("duplicating a file".into()))?,
        ))
        .stderr(Stdio::from(
            err_f.try_clone().map_err(io("duplicating a file".into()))?,
        ));
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_COMMON_DIR",
        "GIT_NAMESPACE",
        "GIT_PREFIX",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("GIT_TERMINAL_PROMPT", "0");
    for (k, v) in &git.env {
        cmd.env(k, v);
    }
    // SAFETY: setsid is async-signal-safe; the closure touches nothing else.
    // A new session = no controlling terminal (ssh cannot prompt) and a
    // process group we can kill whole on timeout.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(io(format!(
        "running {} {sub}",
        git.program.to_string_lossy()
    )))?;
    drop(cmd);
    let deadline = Instant::now() + git.timeout;
    let mut pause = Duration::from_millis(2);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(source) => {
                kill_group(child.id());
                let _ = child.wait();
                return Err(SyncError::Io {
                    context: format!("waiting for git {sub}"),
                    source,
                });
            }
        }
        if Instant::now() >= deadline {
            kill_group(child.id());
            let _ = child.wait();
            return Err(SyncError::Timeout {
                command: sub.to_string(),
                after: git.timeout,
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    Ok(GitOutput {
        status,
        stdout: read_tail(&mut out_f, MAX_STDERR * 4),
        stderr: read_tail(&mut err_f, MAX_STDERR),
    })
}

fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        if pid > 0 {
            // SAFETY: plain syscall; the child leads its own process group
            // (setsid), so -pid is exactly its group.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}
