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
//!
//! Kept, a 100,000-entry index costs ~17 MiB. It is worth it while commits
//! follow each other; an idle daemon should not pay it. So a kept index is
//! dropped [`KEEP_FOR`] after its last use by one process-wide thread that
//! sleeps (parked, no timer) while nothing is kept.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

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

/// How long an unused index is kept.
#[cfg(not(test))]
pub(super) const KEEP_FOR: Duration = Duration::from_secs(10);
#[cfg(test)]
pub(super) const KEEP_FOR: Duration = Duration::from_millis(100);

/// Per-notebook cache of the index (shared by the clones of a manager).
#[derive(Default)]
pub(super) struct IndexCache {
    /// The index and when it was kept.
    kept: Mutex<Option<(SendIndex, Instant)>>,
    facts: Mutex<Option<Facts>>,
}

impl IndexCache {
    /// The kept index, if any, attached to `repo` and brought up to date
    /// with the file (libgit2 re-reads it when its trailer changed).
    /// `None`: nothing kept, or it could not be reused; read afresh.
    pub(super) fn take(&self, repo: &Repository) -> Option<Index> {
        let (SendIndex(mut index), _) = self.kept.lock().take()?;
        // libgit2 keeps its entries when the file is gone: read afresh (empty).
        if !repo.path().join("index").exists() {
            return None;
        }
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

    /// Keep `index`, just written to the file whose stamp is `stamp`, for
    /// [`KEEP_FOR`].
    pub(super) fn keep(self: &Arc<Self>, index: Index, stamp: IndexFileStamp, conflicts: bool) {
        *self.kept.lock() = Some((SendIndex(index), Instant::now()));
        *self.facts.lock() = Some(Facts { stamp, conflicts });
        reaper().watch(self);
    }

    /// Drop the kept index if it is older than `KEEP_FOR`; when the next one
    /// expires otherwise (`None`: nothing kept).
    fn expire(&self, now: Instant) -> Option<Instant> {
        let mut kept = self.kept.lock();
        let until = kept.as_ref().map(|(_, at)| *at + KEEP_FOR)?;
        if until <= now {
            *kept = None;
            return None;
        }
        Some(until)
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

/// The thread that drops indexes kept too long.
struct Reaper {
    caches: Mutex<Vec<Weak<IndexCache>>>,
    thread: std::thread::Thread,
}

impl Reaper {
    /// Look after `cache` (wakes the thread so it sees the new expiry).
    fn watch(&self, cache: &Arc<IndexCache>) {
        let mut caches = self.caches.lock();
        if !caches
            .iter()
            .any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(cache)))
        {
            caches.push(Arc::downgrade(cache));
        }
        drop(caches);
        self.thread.unpark();
    }
}

/// The process's reaper, started on first use.
fn reaper() -> &'static Reaper {
    static REAPER: OnceLock<Reaper> = OnceLock::new();
    REAPER.get_or_init(|| {
        let handle = std::thread::Builder::new()
            .name("gitlockd-index-reaper".into())
            .spawn(reap);
        let thread = match handle {
            Ok(h) => h.thread().clone(),
            // No thread: indexes are then kept until the next commit replaces them.
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the index reaper thread");
                std::thread::current()
            }
        };
        Reaper {
            caches: Mutex::new(Vec::new()),
            thread,
        }
    })
}

/// The reaper's loop: drop expired indexes, give the memory back, sleep
/// until the next expiry (or until woken while nothing is kept).
fn reap() {
    loop {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        let mut dropped = false;
        {
            let mut caches = reaper().caches.lock();
            caches.retain(|w| {
                let Some(cache) = w.upgrade() else {
                    return false;
                };
                let had = cache.kept.lock().is_some();
                match cache.expire(now) {
                    Some(until) => {
                        next = Some(next.map_or(until, |n| n.min(until)));
                        true
                    }
                    None => {
                        dropped |= had;
                        false
                    }
                }
            });
        }
        if dropped {
            // SAFETY: malloc_trim only releases free heap pages.
            unsafe { libc::malloc_trim(0) };
        }
        match next {
            Some(until) => {
                std::thread::park_timeout(until.saturating_duration_since(Instant::now()))
            }
            None => std::thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_index_is_reused_then_dropped_when_idle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repository::init(dir.path()).expect("init");
        std::fs::write(dir.path().join("a.md"), "a\n").expect("write");
        let mut index = repo.index().expect("index");
        index.add_path(Path::new("a.md")).expect("add");
        index.write().expect("write index");
        let cache = Arc::new(IndexCache::default());
        cache.keep(index, IndexFileStamp::of(&repo), false);
        let index = cache.take(&repo).expect("kept index reused");
        assert_eq!(index.len(), 1);
        cache.keep(index, IndexFileStamp::of(&repo), false);
        let deadline = Instant::now() + Duration::from_secs(10);
        while cache.kept.lock().is_some() {
            assert!(Instant::now() < deadline, "kept index never dropped");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Status still answers from the remembered facts, without the index.
        assert_eq!(cache.has_conflicts(&repo).ok(), Some(false));
    }
}
