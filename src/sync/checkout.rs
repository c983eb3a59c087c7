//! Updating the work tree and index as `git merge` does (`git read-tree -m
//! -u`), and cleaning up after a checkout that stopped halfway.
//!
//! git writes a checkout file by file, and unlinks the old version of a file
//! before its filter (smudge, git-lfs) produces the new one. A checkout that
//! stops in between (a failing filter, a timeout, a crash) leaves that file
//! missing, and the next auto-commit would record a deletion nobody made.
//! So, from tree `FROM` to tree `TO`:
//!
//! * a failure we see puts the missing files back at once;
//! * a crash cannot, so the checkout is announced in a note in the git
//!   directory (`gitlockd-sync-checkout`: `FROM TO`), removed when the
//!   checkout ends; a note found at start-up (after the crash recovery)
//!   puts the missing files back before the first auto-commit.
//!
//! "Missing files" are paths the update touches whose index entry is still
//! `FROM`'s version (git did not get to write the index) and that are absent
//! from the work tree; they are written back by `git checkout-index` (with
//! the filters). Files already updated stay: the next auto-commit records
//! them and the next sync merges them with the remote's identical versions.

use std::path::Path;

use git2::{ObjectType, Oid, Repository};

use super::error::{git_err, SyncError};
use super::git_cli::{run_git, run_git_env};
use super::integrate::{local_failure, touched_paths};
use super::local::open;
use super::GitCli;

/// The note of a checkout in progress, in the git directory.
pub const CHECKOUT_NOTE: &str = "gitlockd-sync-checkout";

/// Update the index and work tree from tree `from` (HEAD's; `None`: unborn)
/// to tree `to` as `git merge` would. Check for files in the way first;
/// git itself refuses again (changing nothing) when a tracked file would be
/// lost.
pub(super) fn update_work_tree(
    repo: &Repository,
    workdir: &Path,
    git: &GitCli,
    from: Option<Oid>,
    to: Oid,
) -> Result<(), SyncError> {
    // git compares stat data before content: refresh it first (as `git
    // merge` does), or a file only touched would count as modified.
    let out = run_git(workdir, git, "update-index", &["-q", "--refresh"])?;
    if !out.status.success() && out.status.code() != Some(1) {
        return Err(local_failure(repo, "update-index", &out));
    }
    let from = match from {
        Some(f) => f,
        None => empty_tree()?,
    };
    let note = repo.path().join(CHECKOUT_NOTE);
    std::fs::write(&note, format!("{from} {to}\n")).map_err(|source| SyncError::Io {
        context: format!("writing {}", note.display()),
        source,
    })?;
    let (from_s, to_s) = (from.to_string(), to.to_string());
    let result = run_git_env(
        workdir,
        git,
        "read-tree",
        &["-m", "-u", &from_s, &to_s],
        // English messages: the paths of a refusal are parsed from them.
        &[("LANGUAGE", "C")],
    );
    let outcome = match result {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(local_failure(repo, "read-tree", &out)),
        Err(e) => Err(e),
    };
    // A refusal wrote nothing. Anything else (a failing filter, a timeout)
    // may have stopped the checkout halfway.
    if let Err(e) = &outcome {
        if !matches!(e, SyncError::Blocked { .. } | SyncError::Locked { .. }) {
            restore_unlinked(repo, workdir, git, from, to);
        }
    }
    let _ = std::fs::remove_file(&note);
    outcome
}

/// At start-up, after the crash recovery and before any auto-commit: when
/// a sync's checkout was cut short by a crash (its note is still there),
/// put back the files it had unlinked. Returns how many. Does nothing while
/// another process holds `index.lock` (a git checkout still running).
pub fn recover_interrupted_checkout(root: &Path, git: &GitCli) -> Result<usize, SyncError> {
    let repo = open(root)?;
    let note = repo.path().join(CHECKOUT_NOTE);
    let Ok(text) = std::fs::read_to_string(&note) else {
        return Ok(0);
    };
    if repo.path().join("index.lock").exists() {
        return Ok(0);
    }
    let mut ids = text.split_whitespace().map(Oid::from_str);
    let restored = match (ids.next(), ids.next()) {
        (Some(Ok(from)), Some(Ok(to))) => {
            let workdir = repo.workdir().unwrap_or(root).to_path_buf();
            restore_unlinked(&repo, &workdir, git, from, to)
        }
        _ => 0,
    };
    std::fs::remove_file(&note).map_err(|source| SyncError::Io {
        context: format!("removing {}", note.display()),
        source,
    })?;
    Ok(restored)
}

/// Write back, from the index, the files of tree `from` that the update to
/// `to` touches, that are absent from the work tree, and whose index entry
/// is still `from`'s. Best effort: failures are logged. Returns how many
/// files were asked for.
fn restore_unlinked(repo: &Repository, workdir: &Path, git: &GitCli, from: Oid, to: Oid) -> usize {
    let (Ok(from_tree), Ok(mut index)) = (repo.find_tree(from), repo.index()) else {
        return 0;
    };
    if index.read(true).is_err() {
        return 0;
    }
    let touched = match touched_paths(repo, Some(from), to) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the files an interrupted checkout touched");
            return 0;
        }
    };
    let missing: Vec<&str> = touched
        .iter()
        .filter(|p| {
            let old = from_tree
                .get_path(p)
                .ok()
                .filter(|e| e.kind() == Some(ObjectType::Blob))
                .map(|e| e.id());
            old.is_some() && index.get_path(p, 0).map(|e| e.id) == old
        })
        .filter(|p| {
            std::fs::symlink_metadata(workdir.join(p))
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        })
        .filter_map(|p| p.to_str())
        .collect();
    if missing.is_empty() {
        return 0;
    }
    tracing::warn!(
        files = missing.len(),
        "a sync's checkout stopped halfway; restoring the files it had removed from their committed versions"
    );
    for chunk in missing.chunks(200) {
        let mut args = vec!["-q", "-u", "--"];
        args.extend_from_slice(chunk);
        match run_git(workdir, git, "checkout-index", &args) {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                tracing::warn!(error = %out.message(), "restoring files after an interrupted checkout failed")
            }
            Err(e) => {
                tracing::warn!(error = %e, "restoring files after an interrupted checkout failed")
            }
        }
    }
    missing.len()
}

/// The empty tree (git knows it without it being in the object store).
fn empty_tree() -> Result<Oid, SyncError> {
    Oid::hash_object(ObjectType::Tree, b"").map_err(git_err("hashing the empty tree"))
}
