//! The local repository as sync sees it: which branch and refs a sync
//! involves, whether the repository may be written now, and reads of refs
//! and ancestry (in-process through git2: cheap, and no filters involved).

use std::path::{Path, PathBuf};

use git2::{ErrorCode, Oid, Repository};

use super::diverged_ref_name;
use super::error::{git_err, SyncError};
use crate::config::SyncConfig;
use crate::recovery::WriteMarker;

/// Names involved in one sync.
pub(super) struct Target {
    /// `refs/heads/<local>`.
    pub(super) local_ref: String,
    pub(super) local_branch: String,
    pub(super) remote: String,
    pub(super) remote_branch: String,
    /// `refs/remotes/<remote>/<remote_branch>`.
    pub(super) tracking_ref: String,
    /// `refs/gitlockd/diverged/<remote>/<remote_branch>`.
    pub(super) diverged_ref: String,
}

/// The crash marker in the repository's git directory (see
/// [`crate::recovery`]); removed when dropped.
pub(super) fn begin_marker(repo: &Repository) -> Result<WriteMarker, SyncError> {
    WriteMarker::begin(repo.path()).map_err(|source| SyncError::Io {
        context: format!(
            "writing {}",
            repo.path().join(crate::recovery::MARKER).display()
        ),
        source,
    })
}

pub(super) fn open(root: &Path) -> Result<Repository, SyncError> {
    let repo = crate::git::open(root).map_err(git_err(format!(
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

pub(super) fn workdir(repo: &Repository) -> Result<PathBuf, SyncError> {
    repo.workdir()
        .map(Path::to_path_buf)
        .ok_or_else(|| SyncError::Git {
            context: "finding the work tree".to_string(),
            source: git2::Error::from_str("the repository has no work tree"),
        })
}

pub(super) fn target(repo: &Repository, cfg: &SyncConfig) -> Result<Target, SyncError> {
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

pub(super) fn check_clean(repo: &Repository) -> Result<(), SyncError> {
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
pub(super) fn check_ref_locks(repo: &Repository, t: &Target) -> Result<(), SyncError> {
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

pub(super) fn ref_oid(repo: &Repository, name: &str) -> Result<Option<Oid>, SyncError> {
    match repo.refname_to_id(name) {
        Ok(id) => Ok(Some(id)),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(git_err(format!("reading {name}"))(e)),
    }
}

/// `ancestor` is `descendant` or one of its ancestors.
pub(super) fn contains(
    repo: &Repository,
    descendant: Oid,
    ancestor: Oid,
) -> Result<bool, SyncError> {
    if descendant == ancestor {
        return Ok(true);
    }
    repo.graph_descendant_of(descendant, ancestor)
        .map_err(git_err("computing ancestry"))
}

pub(super) fn count_commits(repo: &Repository, tip: Oid) -> Result<usize, SyncError> {
    let mut walk = repo.revwalk().map_err(git_err("counting commits"))?;
    walk.push(tip).map_err(git_err("counting commits"))?;
    let mut n = 0;
    for id in walk {
        id.map_err(git_err("counting commits"))?;
        n += 1;
    }
    Ok(n)
}

pub(super) fn counts(
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

/// Delete the diverged ref once the commit it keeps is part of `head`.
pub(super) fn clean_diverged_ref(
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
