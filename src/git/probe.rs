//! Small repository probes and the crash marker, for code outside `git/`
//! (the notebook loop, the socket's write operations): all git work goes
//! through this module tree, so callers never touch `git2` or the marker
//! file themselves.

use std::path::{Path, PathBuf};

use super::{busy_state, GitError};
use crate::recovery::{self, WriteMarker};

/// Where a repository keeps its git data.
#[derive(Debug, Clone)]
pub struct RepoDirs {
    /// The git directory (`.git`, or a linked worktree's gitdir): the crash
    /// marker lives here.
    pub git_dir: PathBuf,
    /// The common directory (differs from `git_dir` for linked worktrees).
    pub common_dir: PathBuf,
}

/// Opens the repository whose work tree is exactly `root` (no search
/// upwards) to learn where its git data is.
pub fn repo_dirs(root: &Path) -> Result<RepoDirs, GitError> {
    let repo = super::open(root).map_err(|e| GitError::NotFound {
        what: format!("repository at {}: {}", root.display(), e.message()),
    })?;
    Ok(RepoDirs {
        git_dir: repo.path().to_path_buf(),
        common_dir: repo.commondir().to_path_buf(),
    })
}

/// Refuses while a merge, rebase, ... is in progress ([`GitError::Busy`]).
/// Looks at a few files in the git directory only, no index load; a
/// repository that cannot be opened counts as not busy (the commit that
/// follows reports the real problem).
pub fn check_not_busy(root: &Path) -> Result<(), GitError> {
    if let Ok(repo) = super::open(root) {
        if let Some(state) = busy_state(repo.state()) {
            return Err(GitError::Busy {
                state: state.to_string(),
            });
        }
    }
    Ok(())
}

/// Writes the crash marker before a git write; the write is over when the
/// returned marker is dropped. It proves, after a crash mid-write, that
/// leftover lock files are gitlockd's own.
pub fn begin_write(git_dir: &Path) -> Result<WriteMarker, GitError> {
    WriteMarker::begin(git_dir).map_err(|source| GitError::Io {
        context: format!(
            "writing the crash marker {}",
            git_dir.join(recovery::MARKER).display()
        ),
        source,
    })
}

/// Whether a gitlockd write (live, or cut short by a crash) has its marker
/// in `git_dir`.
pub fn write_in_progress(git_dir: &Path) -> bool {
    git_dir.join(recovery::MARKER).exists()
}

/// Cleans up after a gitlockd that crashed mid-write in this repository
/// (see [`crate::recovery`]); returns the lock files it removed.
pub fn recover_interrupted_write(dirs: &RepoDirs) -> Vec<PathBuf> {
    recovery::recover(&dirs.git_dir, &dirs.common_dir)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) {
        let status = Command::new("git")
            .args(args)
            .current_dir(dir)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }

    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "-b", "main"]);
        dir
    }

    #[test]
    fn repo_dirs_finds_the_git_dir_and_refuses_a_plain_folder() {
        let dir = repo();
        let dirs = repo_dirs(dir.path()).unwrap();
        assert_eq!(
            dirs.git_dir.canonicalize().unwrap(),
            dir.path().join(".git").canonicalize().unwrap()
        );
        let plain = tempfile::tempdir().unwrap();
        let err = repo_dirs(plain.path()).unwrap_err();
        assert!(matches!(err, GitError::NotFound { .. }), "{err:?}");
    }

    #[test]
    fn a_merge_in_progress_is_busy() {
        let dir = repo();
        check_not_busy(dir.path()).unwrap();
        // What `git merge` leaves while conflicts wait: MERGE_HEAD.
        let head = "0123456789012345678901234567890123456789\n";
        std::fs::write(dir.path().join(".git/MERGE_HEAD"), head).unwrap();
        let err = check_not_busy(dir.path()).unwrap_err();
        assert!(
            matches!(&err, GitError::Busy { state } if state == "merge"),
            "{err:?}"
        );
    }

    #[test]
    fn the_marker_lives_while_the_write_does() {
        let dir = repo();
        let git_dir = dir.path().join(".git");
        assert!(!write_in_progress(&git_dir));
        let marker = begin_write(&git_dir).unwrap();
        assert!(write_in_progress(&git_dir));
        drop(marker);
        assert!(!write_in_progress(&git_dir));
        let err = begin_write(&dir.path().join("missing")).unwrap_err();
        assert!(err.to_string().contains("crash marker"), "{err}");
    }
}
