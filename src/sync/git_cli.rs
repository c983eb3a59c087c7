//! Sync's use of the user's `git` (the one runner in
//! [`crate::git::GitProgram`]): its errors as [`SyncError`], and the network
//! half of sync (fetch, push) on top of it.

use std::path::Path;

use git2::{Oid, Repository};

use super::error::{git_err, SyncError};
use super::local::{open, ref_oid, Target};
use super::GitCli;
use crate::git::cli::RunError;

/// What a finished git subprocess printed.
pub(super) type GitOutput = crate::git::cli::Output;

impl From<RunError> for SyncError {
    fn from(e: RunError) -> SyncError {
        match e {
            RunError::Spawn {
                program,
                subcommand,
                source,
            } => SyncError::Io {
                context: format!("running {program} {subcommand}"),
                source,
            },
            RunError::Io { context, source } => SyncError::Io { context, source },
            RunError::Timeout { subcommand, after } => SyncError::Timeout {
                command: subcommand,
                after,
            },
        }
    }
}

/// Fetch the remote branch into the remote-tracking ref; its new tip, or
/// `None` when the remote has no such branch.
pub(super) fn fetch(workdir: &Path, git: &GitCli, t: &Target) -> Result<Option<Oid>, SyncError> {
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

/// Push exactly `commit` to the remote branch (never forced); on success
/// the remote-tracking ref is set to it.
pub(super) fn push_commit(
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
        let stdout = out.text();
        let rejected = stdout.lines().any(|l| {
            let mut f = l.split('\t');
            f.next() == Some("!") && f.nth(1).is_some_and(|s| s.starts_with("[rejected]"))
        });
        let mut msg = out.message();
        for l in stdout.lines().filter(|l| l.starts_with('!')) {
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

/// Run `git <sub> <args>` in `workdir`, no prompt, stopped after the
/// timeout (and the lock files it left then removed).
pub(super) fn run_git(
    workdir: &Path,
    git: &GitCli,
    sub: &str,
    args: &[&str],
) -> Result<GitOutput, SyncError> {
    run_git_env(workdir, git, sub, args, &[])
}

/// [`run_git`] with extra environment variables (identity, locale).
pub(super) fn run_git_env(
    workdir: &Path,
    git: &GitCli,
    sub: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<GitOutput, SyncError> {
    let mut all = Vec::with_capacity(args.len() + 1);
    all.push(sub);
    all.extend_from_slice(args);
    // Its git directories, for the lock files a stopped git may leave.
    let repo = open(workdir)?;
    Ok(git.exec_writing((repo.path(), repo.commondir()), workdir, &all, env, None)?)
}
