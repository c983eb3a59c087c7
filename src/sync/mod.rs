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
//!   `git` executable as a subprocess, through the one runner the commit
//!   path uses too ([`crate::git::GitProgram`]), so the user's ssh config,
//!   agent and credential helpers work as in a terminal. The subprocess
//!   inherits this process's environment plus `GitProgram::env`, with
//!   `GIT_TERMINAL_PROMPT=0`, stdin at `/dev/null`, in its own session (no
//!   controlling terminal, so ssh cannot prompt either), and is stopped (its
//!   whole process group: SIGTERM, then SIGKILL) after
//!   `GitProgram::timeout`. `GIT_SSH_COMMAND` is left untouched. Its output
//!   goes to unlinked temporary files, not pipes, so an ssh `ControlPersist`
//!   master that keeps stderr open cannot hang us.
//! * **Writes to the work tree, the index, commits and the branch** go
//!   through the same `git` too (module `integrate`), so filters, git-lfs,
//!   sparse checkout, signing and the user's config apply as in `git
//!   merge`. Reads (refs, ancestry, counts, tree diffs) are in-process
//!   through git2. The remote-tracking and diverged refs are written by
//!   git2 (no work tree or filter involved).
//! * **Crash marker:** the whole call is bracketed by
//!   [`crate::recovery::WriteMarker`], like auto-commits: after a `kill -9`
//!   mid-sync, the next start removes the lock files this sync (or its git
//!   subprocesses) left behind.
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
//! | `L` ancestor of `R` (or `L` unborn) | [`Integration::FastForward`] | `git read-tree -m -u L R`, then `git update-ref` of the branch (compare-and-swap) |
//! | both moved, clean `git merge-tree` | [`Integration::Merged`] | `git commit-tree` (parents `L`, `R`), `git read-tree -m -u`, then the branch |
//! | both moved, conflicts or no merge base | [`Integration::Diverged`] | only `refs/gitlockd/diverged/<remote>/<branch>` → `R` |
//!
//! The work tree is always updated *before* the branch moves: a crash in
//! between leaves a work tree that the next auto-commit records as a local
//! commit whose tree equals the remote's, which merges trivially. The
//! opposite order would let an auto-commit revert the remote's changes. A
//! checkout cut short (crash, timeout, failing filter) leaves the files
//! written so far; the next auto-commit records them and the next sync
//! merges them with the remote's identical versions. Files git had unlinked
//! to rewrite them are put back (module `checkout`).
//!
//! Never a force push, never a rewrite of history, never conflict markers in
//! a commit: a conflicted merge is not committed and nothing of it is
//! reachable (`git merge-tree` may leave unreferenced objects for `gc`).
//! The push sends the exact commit that was integrated (`git push <remote>
//! <oid>:refs/heads/<branch>`), never `--force`; on success the
//! remote-tracking ref is set to it.
//!
//! When the user resolves a divergence by hand (merges the diverged ref and
//! commits), the next sync finds `R` an ancestor of `L`, pushes, and deletes
//! the diverged ref once the commit it records is an ancestor of `L`. A
//! diverged ref whose commit is not in `L` is never deleted.

mod checkout;
mod error;
mod git_cli;
mod integrate;
mod local;

use std::path::Path;
use std::time::Duration;

use git2::Oid;

use crate::config::SyncConfig;

pub use checkout::{recover_interrupted_checkout, CHECKOUT_NOTE};
use error::git_err;
pub use error::SyncError;
use git_cli::{fetch, push_commit};
use local::{
    begin_marker, check_clean, check_ref_locks, clean_diverged_ref, counts, open, ref_oid, target,
    workdir,
};

/// Default limit for one `git fetch` / `git push` / `git ls-remote`.
pub const DEFAULT_GIT_TIMEOUT: Duration = crate::git::cli::DEFAULT_GIT_TIMEOUT;

/// Prefix of the refs that keep the remote side of a divergence reachable.
pub const DIVERGED_REF_PREFIX: &str = "refs/gitlockd/diverged/";

/// How the `git` subprocess is run: the same runner, with the same rules,
/// as the commits libgit2 cannot make ([`crate::git::GitProgram`]).
pub type GitCli = crate::git::GitProgram;

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

/// Who merge commits are made by: the notebook's `author_name` /
/// `author_email`; a field left `None` falls back to the repository's
/// `user.name` / `user.email`, then to `gitlockd` / `gitlockd@HOSTNAME`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Author {
    /// The name, when configured.
    pub name: Option<String>,
    /// The e-mail address, when configured.
    pub email: Option<String>,
}

/// Ahead/behind from local refs for `status`, recomputed only when the
/// local tip or the remote-tracking ref moved (a walk can be long; reading
/// two refs is not). Never takes the notebook lock.
#[derive(Debug, Default)]
pub struct LiveCounts {
    key: Option<(Option<Oid>, Option<Oid>)>,
    value: (usize, usize),
}

impl LiveCounts {
    /// The current `(ahead, behind)` of the checked-out branch against the
    /// last-fetched remote tip.
    pub fn refresh(&mut self, root: &Path, cfg: &SyncConfig) -> Result<(usize, usize), SyncError> {
        let repo = open(root)?;
        let t = target(&repo, cfg)?;
        let key = (
            ref_oid(&repo, &t.local_ref)?,
            ref_oid(&repo, &t.tracking_ref)?,
        );
        if self.key != Some(key) {
            self.value = counts(&repo, key.0, key.1)?;
            self.key = Some(key);
        }
        Ok(self.value)
    }
}

/// The diverged ref for `remote` / `branch`: `refs/gitlockd/diverged/<remote>/<branch>`.
pub fn diverged_ref_name(remote: &str, branch: &str) -> String {
    format!("{DIVERGED_REF_PREFIX}{remote}/{branch}")
}

/// Fetch, integrate and (when `push` and there is something to push) push,
/// with the default [`GitCli`], merge commits made by `author`. See the
/// module docs for the precondition.
pub fn sync_once(
    root: &Path,
    cfg: &SyncConfig,
    push: bool,
    author: &Author,
) -> Result<SyncOutcome, SyncError> {
    sync_once_as(root, cfg, push, &GitCli::default(), author)
}

/// [`sync_once_as`] with the default [`Author`] (the repository's identity).
pub fn sync_once_with(
    root: &Path,
    cfg: &SyncConfig,
    push: bool,
    git: &GitCli,
) -> Result<SyncOutcome, SyncError> {
    sync_once_as(root, cfg, push, git, &Author::default())
}

/// [`sync_once`] with an explicit [`GitCli`].
///
/// `push` decides alone whether to push (pass `cfg.push` for scheduled syncs,
/// `true` for an explicit `gitlockd sync`). No push happens when the result
/// is `Diverged`. A rejected push is `Err(Push { rejected: true })`; the
/// integration done before it stays (it is local and complete).
pub fn sync_once_as(
    root: &Path,
    cfg: &SyncConfig,
    push: bool,
    git: &GitCli,
    author: &Author,
) -> Result<SyncOutcome, SyncError> {
    let repo = open(root)?;
    let t = target(&repo, cfg)?;
    check_clean(&repo)?;
    let tracked_before = ref_oid(&repo, &t.tracking_ref)?;
    let workdir = workdir(&repo)?;
    // Fetch, checkout, merge commit, ref moves, push: all inside the marker.
    let _marker = begin_marker(&repo)?;
    // No checkout runs now (we hold the lock, and no other git holds the
    // index): a checkout note left by a crash has been dealt with at start.
    let _ = std::fs::remove_file(repo.path().join(CHECKOUT_NOTE));
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

    let integrated = integrate::integrate(&repo, &workdir, git, author, &t, local, remote_tip)?;
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
            let _marker = begin_marker(&repo)?;
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
