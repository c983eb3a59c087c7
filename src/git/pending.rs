//! Finding what to commit after a restart or a lost event: every pending
//! change in the work tree, with stale stat data refreshed first.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use git2::{DiffOptions, FileMode, Index, Repository, Status, StatusOptions};

use super::cached_tree;
use super::error::git_err;
use super::features::{self, GitFeature};
use super::index::{
    is_unreadable_index, keep_index, writable_index, write_index, Attempt, LoadedIndex,
};
use super::index_cache::IndexFileStamp;
use super::read::{is_fs_race, READ_ATTEMPTS};
use super::refresh;
use super::refresh::{Look, Refreshed};
use super::sources::Sources;
use super::untracked;
use super::write::head_commit;
use super::{AutoCommitOptions, GitError, GitManager};
use crate::lock::{LockMode, OwnerId};

impl GitManager {
    /// Every path whose work-tree state differs from HEAD or the index (new,
    /// modified, deleted, both sides of a rename), honouring git's ignore
    /// rules and `opts.filter`: what to commit after a restart or a lost
    /// event. Stale stat data of unchanged files is refreshed in the index
    /// first (see `refresh`); nothing else in it changes.
    pub fn pending_changes(&self, opts: &AutoCommitOptions) -> Result<Vec<PathBuf>, GitError> {
        let _hold = self.hold(LockMode::Shared)?;
        let repo = self.open()?;
        let needs_git = features::detect(&repo, false)
            .iter()
            .any(|f| matches!(f, GitFeature::SparseCheckout | GitFeature::SplitIndex));
        if needs_git {
            return self.pending_changes_via_git(&opts.filter);
        }
        if let Some(found) = self.pending_by_scan(&repo) {
            return Ok(found
                .into_iter()
                .filter(|p| !opts.filter.is_excluded(p))
                .collect());
        }
        self.refresh_stat_data(&repo);
        let mut so = StatusOptions::new();
        so.include_untracked(true)
            .recurse_untracked_dirs(true)
            .include_ignored(false)
            .include_unmodified(false)
            .exclude_submodules(true)
            .update_index(false);
        let mut attempt = 1;
        let statuses = loop {
            match repo.statuses(Some(&mut so)) {
                Ok(statuses) => break statuses,
                // A file changed while libgit2 read it: look again.
                Err(e) if attempt < READ_ATTEMPTS && is_fs_race(&e) => attempt += 1,
                // An index libgit2 cannot read (split or sparse index): ask git.
                Err(e) if is_unreadable_index(&e) => {
                    return self.pending_changes_via_git(&opts.filter)
                }
                Err(e) => return Err(git_err(&repo, "listing changed files")(e)),
            }
        };
        let mut out = BTreeSet::new();
        for entry in statuses.iter() {
            let status = entry.status();
            if status.is_empty() || status.contains(Status::IGNORED) {
                continue;
            }
            let bytes = entry.path_bytes();
            // A directory entry is a nested repository: never staged.
            if bytes.ends_with(b"/") {
                continue;
            }
            let path = PathBuf::from(std::ffi::OsStr::from_bytes(bytes));
            if !opts.filter.is_excluded(&path) {
                out.insert(path);
            }
        }
        Ok(out.into_iter().collect())
    }

    /// The pending changes from one look at every tracked file (the refresh
    /// pass, which also writes fresh stat data back when the lock allows),
    /// the index against HEAD, and a walk for untracked files: each file is
    /// `stat`ed once, where libgit2's status would `stat` it again after the
    /// refresh. `None` when the index or the configuration asks for what
    /// only libgit2's status handles (attributes or `core.autocrlf`, which
    /// change what a file's blob is; conflicts, skip-worktree or
    /// intent-to-add entries; `core.ignoreCase`; `core.symlinks` off; an
    /// index libgit2 cannot compare with HEAD): the caller asks libgit2.
    ///
    /// The index is kept for the next operation only under the exclusive
    /// lock, as `index_cache` requires.
    fn pending_by_scan(&self, repo: &Repository) -> Option<BTreeSet<PathBuf>> {
        let exclusive = self
            .lock
            .try_lock(OwnerId::current(), LockMode::Exclusive)
            .ok();
        let mut loaded = writable_index(repo, &self.index_cache).ok()?;
        let mut sources = Sources::new(repo, &self.root);
        if !scan_handles(repo, &loaded.index) {
            if exclusive.is_some() {
                keep_index(&self.index_cache, loaded);
            }
            return None;
        }
        let look = Look {
            judge: true,
            filemode: sources.filemode(),
            apply: exclusive.is_some(),
        };
        let mtime = loaded.stamp.mtime();
        let scan = refresh::look_at_files(&self.root, &mut loaded.index, mtime, look);
        let mut found: BTreeSet<PathBuf> = scan
            .changed
            .into_iter()
            .map(|p| PathBuf::from(OsStr::from_bytes(&p)))
            .collect();
        let staged = staged_paths(repo, &loaded);
        found.extend(untracked::untracked_files(
            repo,
            &self.root,
            &loaded.index,
            &mut sources,
        ));
        // Without the exclusive lock nothing was refreshed (`apply` was off)
        // and nothing may be kept.
        if exclusive.is_some() {
            self.write_back(repo, loaded, &scan.refreshed);
        }
        found.extend(staged?);
        Some(found)
    }

    /// Write fresh stat data for the index entries whose files are unchanged
    /// but whose stat data is stale (a copied or restored notebook), hashing
    /// them in parallel. Best effort: when the lock cannot be had exclusively
    /// at once, the index is busy or locked, or another process rewrites it
    /// meanwhile, nothing is written and the scan hashes as before.
    fn refresh_stat_data(&self, repo: &Repository) {
        let Ok(_hold) = self.lock.try_lock(OwnerId::current(), LockMode::Exclusive) else {
            return;
        };
        let mut loaded = match writable_index(repo, &self.index_cache) {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::debug!(root = %self.root.display(), error = %e, "stat data not refreshed");
                return;
            }
        };
        let mtime = loaded.stamp.mtime();
        if !refresh::looks_stale(&self.root, &loaded.index, mtime)
            || !refresh::raw_bytes_are_blobs(repo, &loaded.index)
        {
            keep_index(&self.index_cache, loaded);
            return;
        }
        let done = match refresh::refresh(&self.root, &mut loaded.index, loaded.stamp.mtime()) {
            Ok(done) => done,
            Err(e) => {
                tracing::debug!(root = %self.root.display(), error = %e, "stat data not refreshed");
                return;
            }
        };
        self.write_back(repo, loaded, &done);
    }

    /// Writes refreshed stat data back (when there is any) and keeps the
    /// index for the next operation; the caller holds the exclusive lock.
    /// An index another process rewrote meanwhile is dropped, not written.
    fn write_back(&self, repo: &Repository, mut loaded: LoadedIndex, done: &Refreshed) {
        if done.updated == 0 {
            keep_index(&self.index_cache, loaded);
            return;
        }
        match write_index(repo, &mut loaded) {
            Ok(Attempt::Done(())) => {
                tracing::info!(root = %self.root.display(), hashed = done.hashed, refreshed = done.updated, "refreshed stale stat data in the index");
                keep_index(&self.index_cache, loaded);
            }
            Ok(Attempt::Again(_)) => {}
            Err(e) => {
                tracing::debug!(root = %self.root.display(), error = %e, "stat data not refreshed")
            }
        }
    }
}

/// Entry flags (extended) only libgit2's status handles here.
const SKIP_WORKTREE: u16 = 1 << 14;
const INTENT_TO_ADD: u16 = 1 << 13;

/// Whether `pending_by_scan` sees what libgit2's status would: files are
/// their raw bytes, entries plain (stage 0, files, symlinks or gitlinks),
/// paths case-sensitive and symlinks real.
fn scan_handles(repo: &Repository, index: &Index) -> bool {
    let config = repo.config().and_then(|mut c| c.snapshot()).ok();
    let flag = |key: &str, default: bool| {
        config
            .as_ref()
            .and_then(|c| c.get_bool(key).ok())
            .unwrap_or(default)
    };
    if flag("core.ignorecase", false) || !flag("core.symlinks", true) {
        return false;
    }
    refresh::raw_bytes_are_blobs(repo, index)
        && index.iter().all(|e| {
            e.flags & 0x3000 == 0
                && e.flags_extended & (SKIP_WORKTREE | INTENT_TO_ADD) == 0
                && matches!(e.mode, 0o100644 | 0o100755 | 0o120000 | 0o160000)
        })
}

/// Paths staged but not committed: none when the index file's own tree id
/// is HEAD's (see `cached_tree`), else the index against HEAD's tree (every
/// entry when there is no commit yet). Submodules are left out, as in the
/// status. `None` when libgit2 cannot compare them.
fn staged_paths(repo: &Repository, loaded: &LoadedIndex) -> Option<Vec<PathBuf>> {
    let head = head_commit(repo).ok()?;
    let tree = match head {
        Some(commit) => Some(commit.tree().ok()?),
        None => None,
    };
    if let Some(tree) = &tree {
        // Only if the file read is the one the index was loaded from.
        let file = repo.path().join("index");
        let cached =
            cached_tree::root_tree(&file).filter(|_| IndexFileStamp::of(repo) == loaded.stamp);
        if cached == Some(tree.id()) {
            return Some(Vec::new());
        }
    }
    let index = &loaded.index;
    let mut opts = DiffOptions::new();
    opts.ignore_submodules(true);
    let diff = repo
        .diff_tree_to_index(tree.as_ref(), Some(index), Some(&mut opts))
        .ok()?;
    let gitlink_or_none = |m: FileMode| matches!(m, FileMode::Commit | FileMode::Unreadable);
    let mut out = Vec::new();
    for delta in diff.deltas() {
        if gitlink_or_none(delta.old_file().mode()) && gitlink_or_none(delta.new_file().mode()) {
            continue;
        }
        for file in [delta.old_file(), delta.new_file()] {
            if let Some(path) = file.path() {
                out.push(path.to_path_buf());
            }
        }
    }
    Some(out)
}
