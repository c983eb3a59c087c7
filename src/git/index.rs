//! The guard around the on-disk index: it is loaded only when committing is
//! allowed (no operation in progress, no conflicts, no foreign `index.lock`),
//! written back only if no other process rewrote it meanwhile, and kept in
//! memory for the next operation once written.
//!
//! libgit2, unlike git, does not hold `index.lock` from read to write: these
//! checks are what keeps a user's own `git add` from being undone by ours.

use std::path::PathBuf;
use std::sync::Arc;

use git2::{Index, Repository};

use super::busy_state;
use super::error::git_err;
use super::index_cache::{IndexCache, IndexFileStamp};
use super::GitError;

/// One pass of a retried operation.
pub(super) enum Attempt<T> {
    /// Finished.
    Done(T),
    /// Another process rewrote the index (whose lock file this is) while we
    /// worked: start again from a fresh read.
    Again(PathBuf),
}

/// The index as loaded, and the file's stamp from just before loading it.
pub(super) struct LoadedIndex {
    pub(super) index: Index,
    pub(super) stamp: IndexFileStamp,
}

/// Committing is allowed now: no operation (merge, rebase, ...) in
/// progress and no `index.lock` of another process. Looks at a few files
/// in `.git` only, so it is checked before anything is staged.
pub(super) fn check_writable(repo: &Repository) -> Result<(), GitError> {
    if let Some(state) = busy_state(repo.state()) {
        return Err(GitError::Busy {
            state: state.to_string(),
        });
    }
    let lock = repo.path().join("index.lock");
    if lock.exists() {
        return Err(GitError::IndexLocked { path: lock });
    }
    Ok(())
}

/// The index, up to date with the file, when committing is allowed now: no
/// operation in progress, no conflicts, no foreign `index.lock`. Checked
/// before anything is written. Starts from the index kept after our last
/// write when there is one (libgit2 re-reads it if the file changed since).
pub(super) fn writable_index(
    repo: &Repository,
    cache: &IndexCache,
) -> Result<LoadedIndex, GitError> {
    check_writable(repo)?;
    // Before loading: a rewrite after this is caught by `write_index`, and
    // it is the conservative side for the racy-clean check.
    let stamp = IndexFileStamp::of(repo);
    let index = match cache.take(repo) {
        Some(index) => index,
        None => {
            let mut index = repo.index().map_err(|e| {
                cache.clear();
                git_err(repo, "reading the index")(e)
            })?;
            // libgit2 caches the index: reload it if someone else wrote it meanwhile.
            index
                .read(false)
                .map_err(git_err(repo, "reading the index"))?;
            index
        }
    };
    if index.has_conflicts() {
        return Err(GitError::Busy {
            state: "conflicts".to_string(),
        });
    }
    Ok(LoadedIndex { index, stamp })
}

/// Write the index back, unless another process rewrote it since we loaded
/// it: writing ours would undo their staging (libgit2, unlike git, does not
/// hold `index.lock` from read to write), so the caller starts again.
pub(super) fn write_index(
    repo: &Repository,
    loaded: &mut LoadedIndex,
) -> Result<Attempt<()>, GitError> {
    if IndexFileStamp::of(repo) != loaded.stamp {
        return Ok(Attempt::Again(repo.path().join("index.lock")));
    }
    loaded
        .index
        .write()
        .map_err(git_err(repo, "writing the index"))?;
    loaded.stamp = IndexFileStamp::of(repo);
    Ok(Attempt::Done(()))
}

/// Keep the index just written for the next operation.
pub(super) fn keep_index(cache: &Arc<IndexCache>, loaded: LoadedIndex) {
    let conflicts = loaded.index.has_conflicts();
    cache.keep(loaded.index, loaded.stamp, conflicts);
}

/// libgit2 cannot read this index: a split index (`link`), a sparse index
/// (`sdir`), or another extension it does not know.
pub(super) fn is_unreadable_index(e: &git2::Error) -> bool {
    e.class() == git2::ErrorClass::Index && e.message().contains("extension")
}

/// True when an entry is flagged skip-worktree (sparse checkout, or
/// `git update-index --skip-worktree`). Such flags exist only in index
/// version 3 and up, so a version 2 index is not walked at all.
pub(super) fn has_skip_worktree(index: &Index) -> bool {
    const SKIP_WORKTREE: u16 = 1 << 14;
    index.version() >= 3 && index.iter().any(|e| e.flags_extended & SKIP_WORKTREE != 0)
}
