//! Finding what to commit after a restart or a lost event: every pending
//! change in the work tree, with stale stat data refreshed first.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use git2::{Repository, Status, StatusOptions};

use super::error::git_err;
use super::features::{self, GitFeature};
use super::read::{is_fs_race, READ_ATTEMPTS};
use super::refresh;
use super::write::{is_unreadable_index, keep_index, writable_index, write_index, Attempt};
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
