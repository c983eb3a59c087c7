//! Putting work-tree paths into the (already loaded) index, and nothing else.
//!
//! The rules, in order, for each path: never `.git` internals, editor
//! temporaries or the user's `ignore` globs (the [`PathFilter`]); nothing
//! inside a nested repository; an untracked path git ignores stays out (a
//! tracked one stays tracked); a file over the size limit keeps its previous
//! index entry; a file that changes while it is hashed gets its previous
//! entry back and is reported for a recheck, unless the batch is past
//! `max_delay` ([`Stager::take_as_read`]): then it is staged as it was read.

use std::ffi::OsStr;
use std::io::{ErrorKind, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use git2::{Index, IndexAddOption, IndexEntry, IndexTime, Oid, Repository};

use super::error::{git_err, io_err};
use super::features::{self, GitFeature};
use super::read::{is_fs_race, READ_ATTEMPTS};
use super::sources::Sources;
use super::stamp::settle;
// Re-exported for the refresh, which imports them from here.
pub(super) use super::stamp::{coarse_now, Stamp};
use super::GitError;
use crate::filter::PathFilter;

/// Stages paths of one notebook into one index, collecting what it left out.
pub(crate) struct Stager<'a> {
    /// The repository the index belongs to.
    repo: &'a Repository,
    /// Canonical work-tree root.
    root: &'a Path,
    /// gitlockd's own exclusions.
    filter: &'a PathFilter,
    /// Larger files are skipped.
    max_file_size: u64,
    /// Modification time of the index file when it was loaded: an entry
    /// whose file changed at or after it may be "racily clean" (git's term).
    index_mtime: Option<(i64, i64)>,
    /// Files skipped for their size.
    pub skipped_large: Vec<(PathBuf, u64)>,
    /// Files that changed while being staged (their entry was restored).
    pub recheck: Vec<PathBuf>,
    /// Filter drivers with a `clean` or `process` command in the config.
    drivers: Vec<String>,
    /// Set (and staging stops) when a file needs git itself: its filter or
    /// encoding attribute is something libgit2 would not apply.
    pub needs_git: Option<GitFeature>,
    /// Files and folders gitlockd may not read (their entries are kept as
    /// they were), with the reason: one such file must not stop the rest.
    pub unreadable: Vec<(PathBuf, String)>,
    /// Which folders have ignore or attributes files (looked at once a round).
    sources: Sources,
    /// The index holds conflict entries: every file goes through
    /// `add_path` (which resolves them like `git add`).
    conflicted: Option<bool>,
    /// `core.fileMode`: whether a change of the execute bit is a change.
    exec_bit: bool,
    /// Stage a file that changes while it is read as it was read (see
    /// [`Stager::take_as_read`]).
    as_read: bool,
}

/// Largest file read into memory and stored as it is (larger ones are
/// streamed by libgit2's `add_path`).
const RAW_BLOB_MAX: u64 = 4 << 20;

/// Reads of a file that keeps changing, past `max_delay`, before it is left
/// for a recheck when none was whole (see [`Stager::restage_as_read`]).
const AS_READ_ATTEMPTS: u32 = 10;

impl<'a> Stager<'a> {
    pub fn new(
        repo: &'a Repository,
        root: &'a Path,
        filter: &'a PathFilter,
        max_file_size: u64,
        index_mtime: Option<(i64, i64)>,
    ) -> Stager<'a> {
        let sources = Sources::new(repo, root);
        let exec_bit = sources.trusts_exec_bit();
        Stager {
            repo,
            root,
            filter,
            max_file_size,
            index_mtime,
            skipped_large: Vec::new(),
            recheck: Vec::new(),
            drivers: features::filter_drivers(repo),
            needs_git: None,
            unreadable: Vec::new(),
            sources,
            conflicted: None,
            exec_bit,
            as_read: false,
        }
    }

    /// Stage a file that changes while it is read (or was written too
    /// recently to settle) as it was read, instead of putting its entry back
    /// for a recheck. For a batch past `max_delay`: a file rewritten every
    /// few milliseconds changes during every read, and rechecking it round
    /// after round postpones its commit without bound. The first read that
    /// saw no change from start to end is a state the file had; its later
    /// changes make the next commit (no such read: a recheck after all). The entry
    /// gets stat data no file has (see [`smudge`]), so git and gitlockd
    /// compare the content next time instead of trusting the stat.
    pub fn take_as_read(&mut self, on: bool) {
        self.as_read = on;
    }

    /// Bring the index entry (or entries, for a directory) of `rel` in line
    /// with the work tree. `rel` is notebook-relative and normalized; the
    /// empty path means the whole tree (`git add -A`).
    pub fn stage(&mut self, index: &mut Index, rel: &Path) -> Result<(), GitError> {
        if rel.as_os_str().is_empty() {
            return self.stage_all(index);
        }
        if self.filter.is_excluded(rel) || self.in_nested_repo(rel) {
            return Ok(());
        }
        let full = self.root.join(rel);
        match std::fs::symlink_metadata(&full) {
            Ok(meta) if meta.is_dir() => {
                if full.join(".git").exists() || is_gitlink(index, rel) {
                    tracing::debug!(path = %rel.display(), "not staging a nested repository");
                    return Ok(());
                }
                // A file that became a directory: drop the file's entry.
                if index.get_path(rel, 0).is_some() {
                    index
                        .remove_path(rel)
                        .map_err(git_err(self.repo, format!("unstaging {}", rel.display())))?;
                }
                self.stage_tree(index, rel)
            }
            Ok(meta) if meta.is_file() || meta.file_type().is_symlink() => {
                self.stage_file(index, rel, &full, &meta)
            }
            // FIFOs, sockets, devices: git cannot store them.
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => {
                let ctx = || format!("staging the deletion of {}", rel.display());
                if index.get_path(rel, 0).is_some() {
                    index.remove_path(rel).map_err(git_err(self.repo, ctx()))?;
                }
                index.remove_dir(rel, 0).map_err(git_err(self.repo, ctx()))
            }
            // Inside a folder gitlockd may not enter: its entry stays as it was.
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                self.unreadable.push((rel.to_path_buf(), e.to_string()));
                Ok(())
            }
            Err(e) => Err(io_err(format!("reading {}", full.display()))(e)),
        }
    }

    /// One regular file or symlink.
    fn stage_file(
        &mut self,
        index: &mut Index,
        rel: &Path,
        full: &Path,
        meta: &std::fs::Metadata,
    ) -> Result<(), GitError> {
        // With `core.symlinks` off a tracked link is checked out as a plain
        // file holding its target; git keeps its entry a link when that file
        // changes, libgit2 would make it a regular file.
        let link = meta.is_file()
            && !self.sources.has_symlinks()
            && index.get_path(rel, 0).is_some_and(|e| e.mode == LINK_MODE);
        self.stage_file_as_found(index, rel, full, meta)?;
        match index.get_path(rel, 0) {
            Some(mut entry) if link && entry.mode != LINK_MODE => {
                entry.mode = LINK_MODE;
                index.add(&entry).map_err(git_err(
                    self.repo,
                    format!("keeping {} a symbolic link", rel.display()),
                ))
            }
            _ => Ok(()),
        }
    }

    /// [`Stager::stage_file`] with the mode libgit2 takes from the file.
    fn stage_file_as_found(
        &mut self,
        index: &mut Index,
        rel: &Path,
        full: &Path,
        meta: &std::fs::Metadata,
    ) -> Result<(), GitError> {
        let previous = index.get_path(rel, 0);
        if previous.is_none() && self.ignored(rel)? {
            return Ok(());
        }
        if meta.len() > self.max_file_size {
            self.skipped_large.push((rel.to_path_buf(), meta.len()));
            return Ok(());
        }
        let before = Stamp::of(meta);
        if previous
            .as_ref()
            .is_some_and(|e| before.matches_in(e, self.exec_bit) && self.older_than_index(e))
        {
            // Unchanged since it was staged (git's own stat check).
            return Ok(());
        }
        if self.sources.may_have_attributes(rel, index) {
            if let Some(feature) = features::file_feature(self.repo, rel, &self.drivers) {
                self.needs_git = Some(feature);
                return Ok(());
            }
        }
        let (before, settled) = match settle(full, before) {
            Some(before) => (before, true),
            None if self.as_read => (before, false),
            None => {
                self.recheck.push(rel.to_path_buf());
                return Ok(());
            }
        };
        // A directory that became a file: drop the entries below it.
        index
            .remove_dir(rel, 0)
            .map_err(git_err(self.repo, format!("staging {}", rel.display())))?;
        let raw = meta.is_file()
            && meta.len() <= RAW_BLOB_MAX
            && self.sources.raw_blob(rel, index)
            && !*self.conflicted.get_or_insert_with(|| index.has_conflicts());
        let added = add_file(self.repo, index, rel, full, meta, raw);
        if let Err(e) = added {
            // Checked only on failure: the hot path stays one read.
            if let Some(reason) = unreadable(full, meta) {
                self.restore(index, rel, previous)?;
                self.unreadable.push((rel.to_path_buf(), reason));
                return Ok(());
            }
            if Stamp::now(full) != Some(before) {
                // Changed or deleted while we read it (libgit2 fails when the
                // size moves under it): look again later.
                if self.as_read && self.restage_as_read(index, rel, full, raw)? {
                    return Ok(());
                }
                self.restore(index, rel, previous)?;
                self.recheck.push(rel.to_path_buf());
                return Ok(());
            }
            return Err(e);
        }
        if !settled || Stamp::now(full) != Some(before) {
            if self.as_read && self.restage_as_read(index, rel, full, raw)? {
                return Ok(());
            }
            self.restore(index, rel, previous)?;
            self.recheck.push(rel.to_path_buf());
        }
        Ok(())
    }

    /// Past `max_delay`, a file that changed while it was staged: staged
    /// again until one read sees it unchanged from start to end (a state it
    /// really had, not a save caught between its truncation and its write,
    /// nor pages of two versions of a file rewritten in place), at most
    /// [`AS_READ_ATTEMPTS`] times. That entry is smudged: the stat data may
    /// not describe what was read. False when no read was whole: the caller
    /// puts the previous entry back (a torn read is content the file never
    /// held, so it is never committed).
    fn restage_as_read(
        &mut self,
        index: &mut Index,
        rel: &Path,
        full: &Path,
        raw: bool,
    ) -> Result<bool, GitError> {
        for attempt in 0..AS_READ_ATTEMPTS {
            if attempt > 0 {
                // A writer's truncate and write are apart by microseconds.
                std::thread::sleep(Duration::from_millis(1));
            }
            // Gone or replaced: its own event follows.
            let Ok(meta) = std::fs::symlink_metadata(full) else {
                return Ok(false);
            };
            if !(meta.is_file() || meta.file_type().is_symlink()) || meta.len() > self.max_file_size
            {
                return Ok(false);
            }
            if raw && meta.is_file() && meta.len() <= RAW_BLOB_MAX {
                // Read twice, stat data unchanged from the first stat to the
                // last: a write in progress when the first read began leaves
                // the stat data as it was (the times change when a write
                // starts), but not both reads equal.
                match (read_regular(full), read_regular(full)) {
                    (Ok((data, before, _)), Ok((again, _, after)))
                        if Stamp::of(&before) == Stamp::of(&after)
                            && data.len() as u64 == before.len()
                            && data == again =>
                    {
                        if add_buffer(self.repo, index, rel, &before, &data).is_err() {
                            continue;
                        }
                        smudge(self.repo, index, rel)?;
                        return Ok(true);
                    }
                    _ => continue,
                }
            }
            let before = Stamp::of(&meta);
            if add_file(self.repo, index, rel, full, &meta, false).is_err() {
                continue;
            }
            let whole = index
                .get_path(rel, 0)
                .is_some_and(|e| e.file_size == before.len as u32);
            if whole && Stamp::now(full) == Some(before) {
                smudge(self.repo, index, rel)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A directory, recursively, touching only what is under it: its files
    /// are walked (skipping ignored untracked directories and nested
    /// repositories) and its tracked entries that are gone are removed.
    /// libgit2's `add_all` would diff the whole work tree instead.
    fn stage_tree(&mut self, index: &mut Index, rel: &Path) -> Result<(), GitError> {
        let tracked = tracked_under(index, rel);
        if tracked.is_empty() && self.ignored(rel)? {
            return Ok(());
        }
        let mut dirs = vec![rel.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            let full_dir = self.root.join(&dir);
            let entries = match std::fs::read_dir(&full_dir) {
                Ok(entries) => entries,
                // Removed meanwhile: its tracked files are handled below.
                Err(e)
                    if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory =>
                {
                    continue
                }
                Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                    // Its tracked files keep their entries (they cannot be stat'ed either).
                    self.unreadable.push((dir.clone(), e.to_string()));
                    continue;
                }
                Err(e) => return Err(io_err(format!("listing {}", full_dir.display()))(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io_err(format!("listing {}", full_dir.display())))?;
                let child = dir.join(entry.file_name());
                if self.filter.is_excluded(&child) {
                    continue;
                }
                let full = entry.path();
                let Ok(meta) = std::fs::symlink_metadata(&full) else {
                    // Gone since the listing: handled like any deletion.
                    continue;
                };
                if meta.is_dir() {
                    if full.join(".git").exists() || is_gitlink(index, &child) {
                        continue;
                    }
                    let has_tracked = tracked.iter().any(|t| t.starts_with(&child));
                    if !has_tracked && self.ignored(&child)? {
                        continue;
                    }
                    // A tracked file that became a directory.
                    if index.get_path(&child, 0).is_some() {
                        index.remove_path(&child).map_err(git_err(
                            self.repo,
                            format!("unstaging {}", child.display()),
                        ))?;
                    }
                    dirs.push(child);
                } else if meta.is_file() || meta.file_type().is_symlink() {
                    self.stage_file(index, &child, &full, &meta)?;
                    if self.needs_git.is_some() {
                        return Ok(());
                    }
                }
            }
        }
        for path in tracked {
            if self.filter.is_excluded(&path) {
                continue;
            }
            if let Err(e) = std::fs::symlink_metadata(self.root.join(&path)) {
                if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory {
                    index.remove_path(&path).map_err(git_err(
                        self.repo,
                        format!("staging the deletion of {}", path.display()),
                    ))?;
                }
            }
        }
        Ok(())
    }

    /// Everything (`git add -A`), for an explicit commit of all changes.
    fn stage_all(&mut self, index: &mut Index) -> Result<(), GitError> {
        let mut seen: Vec<(PathBuf, Stamp)> = Vec::new();
        let root = self.root;
        let filter = self.filter;
        let max = self.max_file_size;
        let skipped = &mut self.skipped_large;
        let unreadable_files = &mut self.unreadable;
        let mut unsettled = Vec::new();
        let (repo, drivers) = (self.repo, &self.drivers);
        let as_read = self.as_read;
        let mut needs_git = None;
        // 0 = stage, 1 = leave as is. Called only for paths that differ.
        let mut decide = |path: &Path, adding: bool| -> i32 {
            if filter.is_excluded(path) {
                return 1;
            }
            match std::fs::symlink_metadata(root.join(path)) {
                // Gone: a deletion (update_all) to stage.
                Err(_) => i32::from(adding),
                // A directory here is a nested repository or submodule.
                Ok(m) if m.is_dir() => 1,
                Ok(m) if m.len() > max => {
                    skipped.push((path.to_path_buf(), m.len()));
                    1
                }
                // A file only git may stage: this pass is thrown away.
                Ok(_) if needs_git.is_some() => 1,
                Ok(m) if unreadable(&root.join(path), &m).is_some() => {
                    let reason = unreadable(&root.join(path), &m).unwrap_or_default();
                    unreadable_files.push((path.to_path_buf(), reason));
                    1
                }
                Ok(m) => {
                    needs_git = features::file_feature(repo, path, drivers);
                    if needs_git.is_some() {
                        return 1;
                    }
                    match settle(&root.join(path), Stamp::of(&m)) {
                        Some(stamp) => {
                            seen.push((path.to_path_buf(), stamp));
                            0
                        }
                        // Staged; its stamp no longer matches: smudged below.
                        None if as_read => {
                            seen.push((path.to_path_buf(), Stamp::of(&m)));
                            0
                        }
                        None => {
                            unsettled.push(path.to_path_buf());
                            1
                        }
                    }
                }
            }
        };
        // Tracked links, checked out as plain files without `core.symlinks`:
        // kept links below (see `stage_file`).
        let links: Vec<PathBuf> = if self.sources.has_symlinks() {
            Vec::new()
        } else {
            index
                .iter()
                .filter(|e| e.mode == LINK_MODE)
                .map(|e| PathBuf::from(OsStr::from_bytes(&e.path)))
                .collect()
        };
        // "*" matches every path; an empty pathspec would crash git2 0.21's
        // callback (it reads the NULL "matched pathspec").
        let all = ["*"];
        let mut attempt = 1;
        loop {
            // Both are idempotent: after a failure, run them again.
            let result = index
                .add_all(
                    all.iter(),
                    IndexAddOption::DEFAULT,
                    Some(&mut |p: &Path, _: &[u8]| decide(p, true)),
                )
                .and_then(|()| {
                    index.update_all(all.iter(), Some(&mut |p: &Path, _: &[u8]| decide(p, false)))
                });
            match result {
                Ok(()) => break,
                // A file changed size while libgit2 read it.
                Err(e) if attempt < READ_ATTEMPTS && is_fs_race(&e) => attempt += 1,
                Err(e) => return Err(git_err(self.repo, "staging all changes")(e)),
            }
        }

        if needs_git.is_some() {
            // The caller drops this index and commits through git.
            self.needs_git = needs_git;
            return Ok(());
        }
        for rel in links {
            match index.get_path(&rel, 0) {
                Some(mut entry) if entry.mode != LINK_MODE && entry.mode & 0o170000 == 0o100000 => {
                    entry.mode = LINK_MODE;
                    index.add(&entry).map_err(git_err(
                        self.repo,
                        format!("keeping {} a symbolic link", rel.display()),
                    ))?;
                }
                _ => {}
            }
        }
        self.recheck.extend(unsettled);
        self.skipped_large.sort();
        self.skipped_large.dedup();
        let mut changed: Vec<PathBuf> = seen
            .into_iter()
            .filter(|(p, stamp)| Stamp::now(&root.join(p)) != Some(*stamp))
            .map(|(p, _)| p)
            .collect();
        changed.sort();
        changed.dedup();
        if self.as_read {
            let mut torn = Vec::new();
            for p in std::mem::take(&mut changed) {
                if !self.restage_as_read(index, &p, &root.join(&p), false)? {
                    torn.push(p);
                }
            }
            changed = torn;
        }
        if !changed.is_empty() {
            // The entries as they were: the on-disk index is still the old one.
            let on_disk = Index::open(&self.repo.path().join("index"))
                .map_err(git_err(self.repo, "reading the index"))?;
            for p in changed {
                let previous = on_disk.get_path(&p, 0);
                self.restore(index, &p, previous)?;
                self.recheck.push(p);
            }
        }
        Ok(())
    }

    /// Whether git ignores `rel` (.gitignore, info/exclude, core.excludesFile).
    fn ignored(&mut self, rel: &Path) -> Result<bool, GitError> {
        if !self.sources.may_be_ignored(rel) {
            return Ok(false);
        }
        self.repo.is_path_ignored(rel).map_err(git_err(
            self.repo,
            format!("checking ignore rules for {}", rel.display()),
        ))
    }

    /// True when `e`'s file time is strictly before the index was written,
    /// so a later change of the file would show in its stat data.
    fn older_than_index(&self, e: &IndexEntry) -> bool {
        self.index_mtime.is_some_and(|(s, ns)| {
            (
                i64::from(e.mtime.seconds()),
                i64::from(e.mtime.nanoseconds()),
            ) < (s, ns)
        })
    }

    /// Put back `rel`'s entry as it was before we staged it.
    fn restore(
        &self,
        index: &mut Index,
        rel: &Path,
        previous: Option<IndexEntry>,
    ) -> Result<(), GitError> {
        tracing::debug!(path = %rel.display(), "changed while staging; leaving it for a recheck");
        let ctx = || format!("restoring the index entry of {}", rel.display());
        match previous {
            Some(entry) => index.add(&entry).map_err(git_err(self.repo, ctx())),
            None => index.remove_path(rel).map_err(git_err(self.repo, ctx())),
        }
    }

    /// True when an ancestor directory of `rel` is a nested repository.
    fn in_nested_repo(&self, rel: &Path) -> bool {
        rel.ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
            .any(|a| self.root.join(a).join(".git").exists())
    }
}

/// The tracked paths strictly below directory `rel`, from the sorted index.
fn tracked_under(index: &Index, rel: &Path) -> Vec<PathBuf> {
    let mut prefix = rel.as_os_str().as_bytes().to_vec();
    prefix.push(b'/');
    let Ok(start) = index.find_prefix(prefix.as_slice()) else {
        return Vec::new();
    };
    (start..index.len())
        .map_while(|i| index.get(i))
        .take_while(|e| e.path.starts_with(&prefix))
        .filter(|e| e.flags & STAGE_MASK == 0)
        .map(|e| PathBuf::from(OsStr::from_bytes(&e.path)))
        .collect()
}

/// The mode of a symbolic link's index entry.
const LINK_MODE: u32 = 0o120000;

/// The stage bits of an index entry's flags (0 = a normal entry).
const STAGE_MASK: u16 = 0x3000;

/// Why a regular file cannot be read (`None` when it can, or is a symlink,
/// whose target git stores without reading it). Only a refusal counts: any
/// other error is left to staging to report.
fn unreadable(full: &Path, meta: &std::fs::Metadata) -> Option<String> {
    if !meta.is_file() {
        return None;
    }
    // Non-blocking: the path may have become a FIFO since `meta` was taken.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(full);
    match opened {
        Err(e) if e.kind() == ErrorKind::PermissionDenied => Some(e.to_string()),
        _ => None,
    }
}

/// Stage one file: from its bytes when `raw` (see [`add_raw`]), else
/// through libgit2's `add_path` (filters, conflicts, large files).
fn add_file(
    repo: &Repository,
    index: &mut Index,
    rel: &Path,
    full: &Path,
    meta: &std::fs::Metadata,
    raw: bool,
) -> Result<(), GitError> {
    if raw {
        add_raw(repo, index, rel, full, meta)
    } else {
        index
            .add_path(rel)
            .map_err(|e| git_err(repo, format!("staging {}", rel.display()))(e))
    }
}

/// Stage a regular file whose bytes are its blob (no filter can apply, see
/// [`Sources::raw_blob`]): one read, no attribute lookups. The entry is what
/// `add_path` makes: the file's stat data, mode 644 or 755 from the owner's
/// execute bit, conflict entries for the path resolved.
fn add_raw(
    repo: &Repository,
    index: &mut Index,
    rel: &Path,
    full: &Path,
    meta: &std::fs::Metadata,
) -> Result<(), GitError> {
    let (data, _, _) = read_regular(full).map_err(io_err(format!("reading {}", full.display())))?;
    add_buffer(repo, index, rel, meta, &data)
}

/// Stage `data` as `rel`'s content, with `meta`'s stat data (see [`add_raw`]).
fn add_buffer(
    repo: &Repository,
    index: &mut Index,
    rel: &Path,
    meta: &std::fs::Metadata,
    data: &[u8],
) -> Result<(), GitError> {
    let entry = IndexEntry {
        ctime: IndexTime::new(meta.ctime() as i32, meta.ctime_nsec() as u32),
        mtime: IndexTime::new(meta.mtime() as i32, meta.mtime_nsec() as u32),
        dev: meta.dev() as u32,
        ino: meta.ino() as u32,
        mode: if meta.mode() & 0o100 != 0 {
            0o100755
        } else {
            0o100644
        },
        uid: meta.uid(),
        gid: meta.gid(),
        file_size: data.len() as u32,
        id: Oid::ZERO_SHA1,
        flags: 0,
        flags_extended: 0,
        path: rel.as_os_str().as_bytes().to_vec(),
    };
    index
        .add_frombuffer(&entry, data)
        .map_err(|e| git_err(repo, format!("staging {}", rel.display()))(e))
}

/// The bytes of the regular file at `full`, with its stat data from the open
/// file before and after the read (equal when no write came between them).
/// Never follows a symlink nor blocks on a FIFO that replaced the file since
/// it was looked at: those are refused (the caller's stamp check sees why).
fn read_regular(full: &Path) -> std::io::Result<(Vec<u8>, std::fs::Metadata, std::fs::Metadata)> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(full)?;
    let before = file.metadata()?;
    if !before.is_file() {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            "not a regular file any more",
        ));
    }
    let mut data = Vec::with_capacity(before.len() as usize);
    file.read_to_end(&mut data)?;
    let after = file.metadata()?;
    Ok((data, before, after))
}

/// Give `rel`'s entry a modification time no file has (0), keeping its
/// content: the file changed after it was read, so the stat data taken
/// before the read does not describe the content staged. git (and
/// [`Stamp::matches`]) then compare the content instead of trusting the
/// stat data, as for git's own "racily clean" entries.
fn smudge(repo: &Repository, index: &mut Index, rel: &Path) -> Result<(), GitError> {
    let Some(mut entry) = index.get_path(rel, 0) else {
        return Ok(());
    };
    tracing::debug!(path = %rel.display(), "changed while staged; committed as read");
    entry.mtime = IndexTime::new(0, 0);
    index.add(&entry).map_err(git_err(
        repo,
        format!("marking the index entry of {} as unverified", rel.display()),
    ))
}

/// True when the index records `rel` as a submodule (gitlink).
fn is_gitlink(index: &Index, rel: &Path) -> bool {
    index.get_path(rel, 0).is_some_and(|e| e.mode == 0o160000)
}
