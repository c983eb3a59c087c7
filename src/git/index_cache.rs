//! The index as gitlockd last wrote (or read) it, kept in memory between
//! commits, and what `status` needs to know about it.
//!
//! Reading a 100,000-entry index costs ~45 ms (most of it libgit2's SHA-1 of
//! the trailer); an auto-commit changes one entry. So the index loaded for a
//! commit is kept after it was written successfully, and the next commit
//! starts from it. libgit2's own reload check (`git_index_read(.., false)`)
//! compares the file's trailer checksum with the one it wrote or read: any
//! rewrite by another process (git, an editor plugin) makes it re-read the
//! whole file, so the kept copy never stands in for a changed file.
//!
//! A kept index is taken out of the cache for the whole of an operation and
//! put back only once written: an operation that fails half-way (or hands
//! over to `git`) drops its half-staged copy.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use git2::{Index, Repository};
use parking_lot::Mutex;

/// Identity of the index file: git and libgit2 write a new file and rename
/// it into place, so any rewrite changes it (inode, size, times).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct IndexFileStamp(Option<(u64, u64, i64, i64, i64, i64)>);

impl IndexFileStamp {
    pub(super) fn of(repo: &Repository) -> IndexFileStamp {
        IndexFileStamp::of_path(&repo.path().join("index"))
    }

    fn of_path(path: &Path) -> IndexFileStamp {
        IndexFileStamp(std::fs::metadata(path).ok().map(|m| {
            (
                m.ino(),
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            )
        }))
    }

    /// When the index file was written.
    pub(super) fn mtime(&self) -> Option<(i64, i64)> {
        self.0.map(|(_, _, s, ns, _, _)| (s, ns))
    }
}

/// A libgit2 index that may move between threads.
struct SendIndex(Index);

// SAFETY: a `git_index` has no thread affinity; libgit2 only forbids using
// one object from two threads at once. The cache hands the index to one
// operation at a time (it is moved out of the mutex), and every operation
// runs under the notebook's exclusive lock, so the repository it is attached
// to (and detached from on drop) is never used concurrently with it.
unsafe impl Send for SendIndex {}

/// What `status` asks about the index, remembered per file stamp.
#[derive(Clone, Copy, Debug)]
struct Facts {
    stamp: IndexFileStamp,
    conflicts: bool,
}

/// Per-notebook cache of the index (shared by the clones of a manager).
#[derive(Default)]
pub(super) struct IndexCache {
    kept: Mutex<Option<SendIndex>>,
    facts: Mutex<Option<Facts>>,
}

impl IndexCache {
    /// The kept index, if any, attached to `repo` and brought up to date
    /// with the file (libgit2 re-reads it when its trailer changed).
    /// `None`: nothing kept, or it could not be reused; read afresh.
    pub(super) fn take(&self, repo: &Repository) -> Option<Index> {
        let SendIndex(mut index) = self.kept.lock().take()?;
        if repo.set_index(&mut index).is_err() {
            return None;
        }
        match index.read(false) {
            Ok(()) => Some(index),
            Err(e) => {
                tracing::debug!(error = %e, "kept index unusable; reading it afresh");
                None
            }
        }
    }

    /// Keep `index`, just written to the file whose stamp is `stamp`.
    pub(super) fn keep(&self, index: Index, stamp: IndexFileStamp, conflicts: bool) {
        *self.kept.lock() = Some(SendIndex(index));
        *self.facts.lock() = Some(Facts { stamp, conflicts });
    }

    /// Forget everything (the index file is unreadable to libgit2, or gone).
    pub(super) fn clear(&self) {
        *self.kept.lock() = None;
        *self.facts.lock() = None;
    }

    /// Whether the index has conflicts, reading it only when the file
    /// changed since the last answer (status is asked often, commits rarely).
    pub(super) fn has_conflicts(&self, repo: &Repository) -> Result<bool, git2::Error> {
        let stamp = IndexFileStamp::of(repo);
        if let Some(facts) = *self.facts.lock() {
            if facts.stamp == stamp && stamp.0.is_some() {
                return Ok(facts.conflicts);
            }
        }
        let index = repo.index()?;
        let conflicts = index.has_conflicts();
        // Stamped before the read: a rewrite meanwhile only costs a re-read.
        *self.facts.lock() = Some(Facts { stamp, conflicts });
        Ok(conflicts)
    }
}
