//! What can go wrong in a git operation, typed by what the caller does about it.

use std::error::Error as _;
use std::path::PathBuf;

use git2::{ErrorCode, Repository};

use crate::lock::LockError;

/// Why a [`super::GitManager`] operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The repository is mid-merge/rebase/...: commit once it is finished.
    #[error("the repository is busy: {state} in progress; gitlockd commits once it is finished")]
    Busy {
        /// "merge", "rebase", "cherry-pick", "revert", "bisect", "apply-mailbox" or "conflicts".
        state: String,
    },
    /// Another process holds a git lock file: retry later.
    #[error("{} exists: another git process is working on this repository (remove it only if no git process is running)", path.display())]
    IndexLocked {
        /// The lock file (`index.lock`, `HEAD.lock`, a ref's `.lock`).
        path: PathBuf,
    },
    /// The path is outside the notebook or inside `.git`.
    #[error("{}: {reason}", path.display())]
    Forbidden {
        /// The path as given.
        path: PathBuf,
        /// Why it is refused.
        reason: String,
    },
    /// A revision, path or repository that does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// A path to commit that is in neither the work tree, the index nor HEAD.
    #[error(
        "{path} not found in {root}: it is not in the work tree, the index or the last commit; \
         check the spelling (a relative path is taken from the current directory when it \
         exists there, else from the notebook's root)"
    )]
    UnknownPath {
        /// The notebook-relative path asked for.
        path: PathBuf,
        /// The notebook's root.
        root: PathBuf,
    },
    /// `restore --at` reached back before the first commit.
    #[error(
        "no commit as old as {at}: the history starts at {oldest} ({age} ago); \
         use a shorter --at (at most {age}) or name a commit with --rev"
    )]
    BeforeHistory {
        /// The asked-for time (RFC 3339).
        at: String,
        /// The oldest commit's time (RFC 3339).
        oldest: String,
        /// How long ago the oldest commit was made, as `--at` takes it.
        age: String,
    },
    /// Waiting for the notebook lock failed.
    #[error("waiting for the notebook lock")]
    Lock(#[from] LockError),
    /// Any other libgit2 failure.
    #[error("{context}")]
    Git {
        /// What was being done.
        context: String,
        /// libgit2's error.
        #[source]
        source: git2::Error,
    },
    /// A `git` command of the commit path failed: a hook or a filter
    /// refused, signing failed, ... `message` is git's trimmed stderr.
    #[error("{command} failed: {message}")]
    Command {
        /// `git add`, `git commit`, ...
        command: String,
        /// What git (or the hook, filter, signing program) printed.
        message: String,
    },
    /// A `git` command (with its hooks and filters) ran past its time limit
    /// and was killed with its whole process group.
    #[error("{command} was killed after {secs}s: a hook, filter or signing program that never finished? (fix it, or set hooks = false)")]
    Timeout {
        /// `git commit`, ...
        command: String,
        /// The limit.
        secs: u64,
    },
    /// The repository needs the `git` executable for its commits, and it
    /// cannot be run (or is too old).
    #[error("this repository's commits need the git executable ({needed_for}), but {program} cannot be used: {detail}; install git 2.25 or newer (or put it in PATH), or turn those settings off")]
    GitMissing {
        /// The program tried.
        program: String,
        /// Why it cannot be used.
        detail: String,
        /// The settings that need it, e.g. "commit.gpgsign, lfs filter".
        needed_for: String,
    },
    /// A user's request that would lose or mix up a change (an `undo`
    /// whose files changed since): nothing was written.
    #[error("{reason}")]
    Refused {
        /// What blocks it, and how to get past it.
        reason: String,
    },
    /// A filesystem failure.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl GitError {
    /// True when the same operation may succeed later unchanged: a busy
    /// repository, a foreign lock file, a lock wait that timed out, HEAD
    /// moved by another process too often in a row.
    pub fn is_retryable(&self) -> bool {
        match self {
            GitError::Busy { .. } | GitError::IndexLocked { .. } => true,
            GitError::Git { source, .. } => {
                matches!(source.code(), ErrorCode::Modified | ErrorCode::Locked)
            }
            GitError::Lock(e) => !matches!(e, LockError::UpgradeWouldDeadlock { .. }),
            _ => false,
        }
    }

    /// The message with its whole source chain, for a person (`a: b: c`).
    pub fn describe(&self) -> String {
        let mut out = self.to_string();
        let mut source = self.source();
        while let Some(s) = source {
            out.push_str(": ");
            out.push_str(&s.to_string());
            source = s.source();
        }
        out
    }

    /// True for libgit2's "current tip is not the first parent": HEAD moved
    /// between reading it and committing, so the whole operation is redone.
    pub(crate) fn is_stale_parent(&self) -> bool {
        matches!(self, GitError::Git { source, .. } if source.code() == ErrorCode::Modified)
    }
}

/// Maps a libgit2 error: a held lock file becomes `IndexLocked` naming it,
/// anything else `Git` with `context`.
pub(crate) fn git_err(
    repo: &Repository,
    context: impl Into<String>,
) -> impl FnOnce(git2::Error) -> GitError {
    let gitdir = repo.path().to_path_buf();
    let context = context.into();
    move |source| {
        if source.code() == ErrorCode::Locked {
            let path =
                quoted_lock_path(source.message()).unwrap_or_else(|| gitdir.join("index.lock"));
            GitError::IndexLocked { path }
        } else {
            GitError::Git { context, source }
        }
    }
}

/// The `'…/x.lock'` path quoted in a libgit2 message, if any.
fn quoted_lock_path(message: &str) -> Option<PathBuf> {
    let start = message.find('\'')? + 1;
    let len = message[start..].find('\'')?;
    let quoted = &message[start..start + len];
    quoted.ends_with(".lock").then(|| PathBuf::from(quoted))
}

/// An `Io` error with context.
pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> GitError {
    let context = context.into();
    move |source| GitError::Io { context, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_path_is_taken_from_the_message() {
        assert_eq!(
            quoted_lock_path("failed to lock file '/r/.git/refs/heads/main.lock' for writing"),
            Some(PathBuf::from("/r/.git/refs/heads/main.lock"))
        );
        assert_eq!(quoted_lock_path("the index is locked; this might be"), None);
        assert_eq!(quoted_lock_path("'/x/y' is not a lock"), None);
    }
}
