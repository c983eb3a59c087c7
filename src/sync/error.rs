//! Why a sync failed, and how failures are told apart (transient or not).

use std::path::PathBuf;
use std::time::Duration;

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
    #[error(
        "updating the work tree would overwrite {}; commit, move or delete them and sync again",
        display_paths(paths)
    )]
    Blocked {
        /// The files in the way, relative to the notebook root.
        paths: Vec<PathBuf>,
    },
    /// The git subprocess did not finish in time and was killed.
    #[error("`git {command}` did not finish within {}s and was killed", after.as_secs())]
    Timeout {
        /// The git subcommand ("fetch", "push", "read-tree", ...).
        command: String,
        /// The limit.
        after: Duration,
    },
    /// A local git command (merge, checkout, commit, ref update) failed:
    /// a filter, the signing program or the repository refused.
    #[error("`git {command}` failed: {stderr}")]
    Command {
        /// The git subcommand.
        command: String,
        /// git's message.
        stderr: String,
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

pub(super) fn git_err(context: impl Into<String>) -> impl FnOnce(git2::Error) -> SyncError {
    let context = context.into();
    move |source| SyncError::Git { context, source }
}
