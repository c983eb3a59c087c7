//! Which folders are watched: walking the tree, watching new folders,
//! forgetting gone or ignored ones, and git's ignore rules.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use git2::Repository;
use notify::{RecursiveMode, Watcher};

use super::limits::root_gone_reason;
use super::pump::{instant_of, Batch, Pump};

/// How a directory walk behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WalkMode {
    /// At start: watch everything, report nothing (the notebook catches up itself).
    Initial,
    /// A directory appeared: watch it and everything below, report every file inside.
    Appeared,
    /// Ignore rules changed or events were lost: watch what is not watched yet, report nothing.
    Repair,
}

/// The result of asking inotify to watch one directory.
pub(super) enum WatchOutcome {
    /// Watched (or already was).
    Watched,
    /// The directory is gone; its removal event will follow.
    Vanished,
    /// The kernel or notify refused.
    Refused(notify::Error),
}

impl Pump {
    /// Watches `top` and every directory below it that is not ignored; in
    /// [`WalkMode::Appeared`] also reports every file found (files created
    /// before their directory was watched produced no event).
    pub(super) fn walk(&mut self, top: &Path, mode: WalkMode, batch: &mut Batch) {
        let report_files = mode == WalkMode::Appeared;
        let mut watching = true;
        let mut stack = vec![top.to_path_buf()];
        while let Some(dir) = stack.pop() {
            if watching {
                // Watch first, list second: anything created after the listing
                // then produces an event, anything before is in the listing.
                match self.watch_dir(&dir, mode == WalkMode::Appeared) {
                    WatchOutcome::Watched => {}
                    WatchOutcome::Vanished => continue,
                    WatchOutcome::Refused(err) => {
                        let limit = matches!(err.kind, notify::ErrorKind::MaxFilesWatch);
                        if limit {
                            self.degraded = true;
                            self.limit_reached = true;
                            batch.degraded = Some(self.limit_reason(&dir, &err));
                            // Every further watch would be refused the same way.
                            watching = false;
                            if !report_files {
                                return;
                            }
                        } else {
                            // E.g. a folder gitlockd may not read: changes in it
                            // make no event, so rescan until a retry watches it.
                            self.degraded = true;
                            batch.degraded = Some(format!(
                                "cannot watch {}: {err}; until it can be watched (check its \
                                 permissions), changes in it are found by rescans",
                                dir.display()
                            ));
                            continue;
                        }
                    }
                }
            }
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => {
                    batch.error(format!("cannot list {}: {err}", dir.display()));
                    continue;
                }
            };
            for entry in entries.flatten() {
                if entry.file_name() == ".git" {
                    continue;
                }
                // file_type() does not follow symlinks: a link to a directory is a file here.
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if !is_dir && !report_files {
                    // Keeps the start cost per directory, not per file.
                    continue;
                }
                let path = entry.path();
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                if self.is_ignored(rel, false) {
                    continue;
                }
                if is_dir {
                    if !self.is_nested_repo(&path) {
                        stack.push(path);
                    }
                } else if report_files {
                    batch.changed.insert(rel.to_path_buf());
                    // It was written before its folder was watched, so no
                    // event says when: its mtime does. Without it the quiet
                    // period would run from the folder's creation (too
                    // early) or from this listing (a batching window late).
                    if let Some(at) = entry
                        .metadata()
                        .ok()
                        .and_then(|m| m.modified().ok())
                        .and_then(instant_of)
                    {
                        batch.saw(at);
                    }
                }
            }
        }
    }

    /// Re-walks the whole notebook for directories that lost or never got a
    /// watch, and forgets watched directories that no longer exist or are
    /// ignored now (their watches are better spent elsewhere).
    pub(super) fn repair(&mut self, batch: &mut Batch) {
        self.tracked_ignored.borrow_mut().refresh(true);
        let stale: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|dir| *dir != &self.root)
            .filter(|dir| {
                !fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir())
                    || dir
                        .strip_prefix(&self.root)
                        .map_or(true, |rel| self.is_ignored(rel, false))
                    || self.is_nested_repo(dir)
            })
            .cloned()
            .collect();
        for dir in stale {
            self.forget(&dir);
        }
        let root = self.root.clone();
        self.limit_reached = false;
        self.walk(&root, WalkMode::Repair, batch);
        if !self.watched.contains(&root) {
            self.degraded = true;
            batch.degraded = Some(root_gone_reason(&root));
        }
        if self.degraded && batch.degraded.is_none() {
            // A whole walk without a refusal: every folder is watched again.
            self.degraded = false;
            batch.restored = true;
        }
    }

    /// Adds a non-recursive watch on `dir`. `force` re-adds one we believe we
    /// hold (cheap, and it heals any drift between our set and notify's).
    pub(super) fn watch_dir(&mut self, dir: &Path, force: bool) -> WatchOutcome {
        if !force && self.watched.contains(dir) {
            return WatchOutcome::Watched;
        }
        if !self.watched.contains(dir) && self.watch_limit.is_some_and(|n| self.watched.len() >= n)
        {
            let err = notify::Error::new(notify::ErrorKind::MaxFilesWatch).add_path(dir.into());
            return WatchOutcome::Refused(err);
        }
        match self.inotify.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.watched.insert(dir.to_path_buf());
                WatchOutcome::Watched
            }
            Err(err) => match &err.kind {
                notify::ErrorKind::PathNotFound => WatchOutcome::Vanished,
                notify::ErrorKind::Io(io) if io.kind() == io::ErrorKind::NotFound => {
                    WatchOutcome::Vanished
                }
                _ => WatchOutcome::Refused(err),
            },
        }
    }

    /// Forgets `dir` and every watched directory below it, removing their
    /// watches. Returns whether `dir` itself was watched.
    pub(super) fn forget(&mut self, dir: &Path) -> bool {
        if !self.watched.contains(dir) {
            // Nothing below an unwatched directory is watched: walks descend
            // only through directories they watched.
            return false;
        }
        let below: Vec<PathBuf> = self
            .watched
            .range(dir.to_path_buf()..)
            .take_while(|p| p.starts_with(dir))
            .cloned()
            .collect();
        for path in below {
            self.watched.remove(&path);
            // notify usually dropped the watch already (the directory moved or
            // vanished) and answers WatchNotFound; nothing to do about it.
            if let Err(err) = self.inotify.unwatch(&path) {
                tracing::debug!(dir = %path.display(), error = %err, "unwatch");
            }
        }
        true
    }

    /// True when `rel` is excluded by the filter or ignored by git;
    /// `vanished_dir`: it was a directory and no longer exists.
    pub(super) fn is_ignored(&self, rel: &Path, vanished_dir: bool) -> bool {
        self.filter.is_excluded(rel)
            || (git_ignores(&self.repo, rel, vanished_dir)
                && !self.tracked_ignored.borrow_mut().covers(rel))
    }

    /// A subdirectory holding `.git` (a directory, or a file for linked
    /// worktrees and submodules) belongs to another repository.
    pub(super) fn is_nested_repo(&self, dir: &Path) -> bool {
        dir != self.root && fs::symlink_metadata(dir.join(".git")).is_ok()
    }

    pub(super) fn publish_count(&self) {
        self.watch_count
            .store(self.watched.len(), Ordering::Relaxed);
    }
}

/// Whether git ignores `rel`. libgit2 stats an existing path to learn whether
/// it is a directory; for a directory that no longer exists, `vanished_dir`
/// also tries the `dir/` form, or a directory-only pattern (`node_modules/`)
/// would not match it. Never for files: a file named `build` is not ignored
/// by `build/`.
pub(super) fn git_ignores(repo: &Repository, rel: &Path, vanished_dir: bool) -> bool {
    // An error (e.g. a path libgit2 cannot represent) counts as "not ignored":
    // reporting too much is harmless, dropping a change is not.
    if repo.is_path_ignored(rel).unwrap_or(false) {
        return true;
    }
    if !vanished_dir {
        return false;
    }
    let mut with_slash = OsString::from(rel.as_os_str());
    with_slash.push("/");
    repo.is_path_ignored(Path::new(&with_slash))
        .unwrap_or(false)
}
