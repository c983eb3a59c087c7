//! Bringing the fetched remote tip into the local branch, through the
//! user's `git` wherever git's own behaviour matters:
//!
//! * the merged tree comes from `git merge-tree --write-tree` (the same
//!   `ort` merge as `git merge`, with merge attributes and drivers);
//! * the merge commit from `git commit-tree` with the notebook's identity in
//!   `GIT_AUTHOR_*` / `GIT_COMMITTER_*`, signed (`-S`) when `commit.gpgSign`
//!   is set, so `gpg.format`, `user.signingKey` and `gpg.program` apply;
//! * the work tree and index from `git read-tree -m -u OLD NEW` (a two-tree
//!   merge: smudge and process filters, git-lfs, eol attributes and sparse
//!   checkout apply as in `git merge`);
//! * the branch from `git update-ref BRANCH NEW OLD` (compare-and-swap).
//!
//! Before any of it writes, the paths the update touches are checked
//! against `git status` (which sees through filters): an uncommitted change,
//! an uncommitted deletion, an untracked or an ignored file at such a path
//! refuses the update ([`SyncError::Blocked`]), changing nothing. A
//! checkout that fails halfway (a filter, a timeout) puts back the files git
//! had unlinked to rewrite them. No hooks run (`read-tree`, `commit-tree`
//! and `update-ref` run none, except `reference-transaction`).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use git2::{ErrorCode, Oid, Repository};

use super::checkout::update_work_tree;
use super::error::{git_err, SyncError};
use super::git_cli::{run_git, run_git_env, GitOutput};
use super::local::{contains, Target};
use super::{Author, GitCli, Integration};
use crate::git::Identity;

/// Bring `remote` into the branch at `local` (see the module docs).
pub(super) fn integrate(
    repo: &Repository,
    workdir: &Path,
    git: &GitCli,
    author: &Author,
    t: &Target,
    local: Option<Oid>,
    remote: Option<Oid>,
) -> Result<Integration, SyncError> {
    let Some(remote) = remote else {
        return Ok(Integration::UpToDate);
    };
    let ff_message = format!(
        "gitlockd sync: fast-forward to {}/{}",
        t.remote, t.remote_branch
    );
    let Some(local) = local else {
        // Unborn local branch: take the remote's history as it is.
        let to = tree_of(repo, remote)?;
        check_not_blocked(repo, workdir, git, None, to)?;
        update_work_tree(repo, workdir, git, None, to)?;
        move_branch(workdir, git, t, remote, None, &ff_message)?;
        return Ok(Integration::FastForward);
    };
    if contains(repo, local, remote)? {
        return Ok(Integration::UpToDate);
    }
    let from = tree_of(repo, local)?;
    if contains(repo, remote, local)? {
        let to = tree_of(repo, remote)?;
        check_not_blocked(repo, workdir, git, Some(from), to)?;
        update_work_tree(repo, workdir, git, Some(from), to)?;
        move_branch(workdir, git, t, remote, Some(local), &ff_message)?;
        return Ok(Integration::FastForward);
    }
    // Both moved. Unrelated histories are never merged automatically.
    match repo.merge_base(local, remote) {
        Ok(_) => {}
        Err(e) if e.code() == ErrorCode::NotFound => return Ok(Integration::Diverged),
        Err(e) => return Err(git_err("finding the merge base")(e)),
    }
    let Some(merged) = merged_tree(repo, workdir, git, local, remote)? else {
        return Ok(Integration::Diverged);
    };
    // Refuse before signing anything: a blocked merge is retried later.
    check_not_blocked(repo, workdir, git, Some(from), merged)?;
    let message = format!("gitlockd: merge {}/{}", t.remote, t.remote_branch);
    let merge = commit_merge(repo, workdir, git, author, merged, local, remote, &message)?;
    update_work_tree(repo, workdir, git, Some(from), merged)?;
    move_branch(
        workdir,
        git,
        t,
        merge,
        Some(local),
        &format!("gitlockd sync: merge {}/{}", t.remote, t.remote_branch),
    )?;
    Ok(Integration::Merged)
}

fn tree_of(repo: &Repository, id: Oid) -> Result<Oid, SyncError> {
    repo.find_commit(id)
        .map(|c| c.tree_id())
        .map_err(git_err(format!("reading the tree of {id}")))
}

/// The tree `git merge` would commit for a clean merge of `local` and
/// `remote`; `None` when the merge has conflicts.
fn merged_tree(
    repo: &Repository,
    workdir: &Path,
    git: &GitCli,
    local: Oid,
    remote: Oid,
) -> Result<Option<Oid>, SyncError> {
    let (l, r) = (local.to_string(), remote.to_string());
    let out = run_git(
        workdir,
        git,
        "merge-tree",
        &["--write-tree", "--no-messages", "--name-only", &l, &r],
    )?;
    match out.status.code() {
        Some(0) => {}
        Some(1) => return Ok(None),
        // A usage error: git older than 2.38 has no `merge-tree --write-tree`.
        Some(129) => {
            tracing::debug!(
                "git merge-tree --write-tree is not supported (git < 2.38); merging with libgit2"
            );
            return merged_tree_in_process(repo, local, remote);
        }
        _ => return Err(command_failed("merge-tree", &out)),
    }
    let text = out.text();
    let first = text.lines().next().unwrap_or_default().trim();
    Oid::from_str(first)
        .map(Some)
        .map_err(|_| SyncError::Command {
            command: "merge-tree".into(),
            stderr: format!("unexpected output {first:?}"),
        })
}

/// [`merged_tree`] by libgit2, for a git without `merge-tree --write-tree`:
/// the same result for ordinary merges, but no custom merge drivers. A
/// conflicted merge stays in memory (nothing is written).
fn merged_tree_in_process(
    repo: &Repository,
    local: Oid,
    remote: Oid,
) -> Result<Option<Oid>, SyncError> {
    let find = |id: Oid| {
        repo.find_commit(id)
            .map_err(git_err(format!("reading commit {id}")))
    };
    let (l, r) = (find(local)?, find(remote)?);
    let mut index = repo
        .merge_commits(&l, &r, Some(&git2::MergeOptions::new()))
        .map_err(git_err("merging in memory"))?;
    // Only stage-0 entries may go into a tree.
    if index.has_conflicts() || index.iter().any(|e| (e.flags >> 12) & 0x3 != 0) {
        return Ok(None);
    }
    index
        .write_tree_to(repo)
        .map(Some)
        .map_err(git_err("writing the merged tree"))
}

/// Whether the user's git config asks for signed commits (`commit.gpgSign`,
/// read by git itself: includes and conditional includes apply).
fn wants_signing(workdir: &Path, git: &GitCli) -> Result<bool, SyncError> {
    let out = run_git(
        workdir,
        git,
        "config",
        &["--type=bool", "--get", "commit.gpgsign"],
    )?;
    match out.status.code() {
        Some(0) => Ok(out.text().trim() == "true"),
        // Unset.
        Some(1) => Ok(false),
        _ => Err(command_failed("config", &out)),
    }
}

/// Create the merge commit (parents `local`, `remote`) through git.
#[allow(clippy::too_many_arguments)]
fn commit_merge(
    repo: &Repository,
    workdir: &Path,
    git: &GitCli,
    author: &Author,
    tree: Oid,
    local: Oid,
    remote: Oid,
    message: &str,
) -> Result<Oid, SyncError> {
    // As auto-commits: the notebook's author, else the repository's, else gitlockd@HOSTNAME.
    let identity = Identity::resolve(repo, author.name.as_deref(), author.email.as_deref());
    let (tree, l, r) = (tree.to_string(), local.to_string(), remote.to_string());
    let mut args = vec![tree.as_str(), "-p", &l, "-p", &r, "-m", message];
    // commit-tree does not read commit.gpgSign itself (checked: git 2.47).
    let sign = wants_signing(workdir, git)?;
    if sign {
        args.push("-S");
    }
    let out = run_git_env(workdir, git, "commit-tree", &args, &identity.env())?;
    if !out.status.success() {
        let mut e = command_failed("commit-tree", &out);
        if sign {
            if let SyncError::Command { stderr, .. } = &mut e {
                stderr.push_str(
                    " (commit.gpgSign is set, so the merge commit is signed: the signing key \
                     (user.signingKey) must be usable without a prompt, e.g. through an agent)",
                );
            }
        }
        return Err(e);
    }
    let text = out.text();
    Oid::from_str(text.trim()).map_err(|_| SyncError::Command {
        command: "commit-tree".into(),
        stderr: format!("unexpected output {:?}", text.trim()),
    })
}

/// Move the branch to `new` if it still is at `old` (`None`: unborn).
fn move_branch(
    workdir: &Path,
    git: &GitCli,
    t: &Target,
    new: Oid,
    old: Option<Oid>,
    msg: &str,
) -> Result<(), SyncError> {
    let new_s = new.to_string();
    // An empty old value means "must not exist yet".
    let old_s = old.map(|o| o.to_string()).unwrap_or_default();
    let out = run_git(
        workdir,
        git,
        "update-ref",
        &["-m", msg, &t.local_ref, &new_s, &old_s],
    )?;
    if out.status.success() {
        return Ok(());
    }
    Err(SyncError::Command {
        command: "update-ref".into(),
        stderr: format!(
            "moving {} to {new} (the work tree already matches it; the next auto-commit records it): {}",
            t.local_ref,
            out.message()
        ),
    })
}

/// Refuse when the update from `from` to `to` touches a path that has an
/// uncommitted change (staged, modified or deleted) or where an untracked or
/// ignored file sits.
fn check_not_blocked(
    repo: &Repository,
    workdir: &Path,
    git: &GitCli,
    from: Option<Oid>,
    to: Oid,
) -> Result<(), SyncError> {
    let touched = touched_paths(repo, from, to)?;
    if touched.is_empty() {
        return Ok(());
    }
    let out = run_git_env(
        workdir,
        git,
        "status",
        &[
            "--porcelain=v1",
            "-z",
            "--untracked-files=all",
            "--ignored=matching",
            "--no-renames",
            "--ignore-submodules=all",
        ],
        // Read only: no opportunistic index refresh.
        &[("GIT_OPTIONAL_LOCKS", "0")],
    )
    .and_then(|o| {
        if o.status.success() {
            Ok(o)
        } else {
            Err(local_failure(repo, "status", &o))
        }
    })?;
    let in_the_way: Vec<PathBuf> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|e| e.len() > 3)
        .map(|e| {
            let p = &e[3..];
            let p = p.strip_suffix(b"/").unwrap_or(p);
            PathBuf::from(OsStr::from_bytes(p))
        })
        .collect();
    let mut blocked: Vec<PathBuf> = Vec::new();
    for p in &touched {
        let hit = in_the_way
            .iter()
            .any(|x| x == p || x.starts_with(p) || p.starts_with(x));
        if hit && !blocked.contains(p) {
            blocked.push(p.clone());
        }
    }
    if blocked.is_empty() {
        Ok(())
    } else {
        Err(SyncError::Blocked { paths: blocked })
    }
}

/// Paths whose entry differs between the two trees (both sides of a rename).
pub(super) fn touched_paths(
    repo: &Repository,
    from: Option<Oid>,
    to: Oid,
) -> Result<Vec<PathBuf>, SyncError> {
    let find = |id: Oid| {
        repo.find_tree(id)
            .map_err(git_err(format!("reading tree {id}")))
    };
    let from = from.map(find).transpose()?;
    let to = find(to)?;
    let diff = repo
        .diff_tree_to_tree(from.as_ref(), Some(&to), None)
        .map_err(git_err("comparing trees"))?;
    let mut out = Vec::new();
    for d in diff.deltas() {
        for p in [d.old_file().path(), d.new_file().path()]
            .into_iter()
            .flatten()
        {
            if !out.iter().any(|x: &PathBuf| x == p) {
                out.push(p.to_path_buf());
            }
        }
    }
    Ok(out)
}

/// A local git command's failure, typed: a lock file held by another
/// process, files in the way (git's own last check), or git's message.
pub(super) fn local_failure(repo: &Repository, command: &str, out: &GitOutput) -> SyncError {
    let stderr = out.message();
    if stderr.contains("index.lock") {
        return SyncError::Locked {
            path: repo.path().join("index.lock"),
        };
    }
    // "error: Entry 'x' not uptodate. Cannot merge.", "error: Untracked
    // working tree file 'x' would be overwritten by merge.", ...
    let paths: Vec<PathBuf> = stderr
        .lines()
        .filter(|l| {
            l.starts_with("error:") && (l.contains("overwritten") || l.contains("not uptodate"))
        })
        .filter_map(|l| {
            let start = l.find('\'')?;
            let end = l.rfind('\'')?;
            (end > start + 1).then(|| PathBuf::from(&l[start + 1..end]))
        })
        .collect();
    if !paths.is_empty() {
        return SyncError::Blocked { paths };
    }
    command_failed(command, out)
}

fn command_failed(command: &str, out: &GitOutput) -> SyncError {
    SyncError::Command {
        command: command.to_string(),
        stderr: out.message(),
    }
}
