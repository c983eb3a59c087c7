//! The untracked files of a work tree that git does not ignore, found by a
//! walk of the folders against the index, for the start-up scan.
//!
//! libgit2's status compares every tracked file with the index as it walks,
//! a second `stat` of each after the refresh pass has looked at them all
//! already (a third of a stale start-up's CPU). This walk reads folders
//! only: a tracked name is found in the index by binary search and skipped,
//! the kinds come from the folder listing, and ignore rules are asked about
//! only under folders where a `.gitignore` (or a repository-wide ignore
//! file) can apply (`Sources`).
//!
//! Like `git status --untracked-files=all`: every untracked file is listed
//! on its own, also in new folders; an ignored folder is not entered unless
//! it holds tracked files (then its untracked files are ignored, as git says
//! of anything under an ignored folder); a folder with a `.git` that holds
//! no tracked files is another repository and is left alone, and so is a
//! submodule (a gitlink); sockets and FIFOs are not files to git.

use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use git2::{Binding, Index, Repository};

use super::sources::Sources;

/// The mode of a gitlink (submodule) entry.
const GITLINK: u32 = 0o160000;

/// The index's entries by position, borrowed without copies.
struct Entries<'a> {
    index: &'a Index,
    len: usize,
}

impl<'a> Entries<'a> {
    fn new(index: &'a Index) -> Entries<'a> {
        Entries {
            index,
            len: index.len(),
        }
    }

    /// Path and mode of entry `i`.
    fn at(&self, i: usize) -> Option<(&'a [u8], u32)> {
        // SAFETY: `self.index` is borrowed for 'a, so the live `git_index`
        // is not changed meanwhile and its entries (and their paths) stay
        // where they are; the pointer returned is checked for NULL.
        unsafe {
            let e = libgit2_sys::git_index_get_byindex(self.index.raw(), i as libc::size_t);
            if e.is_null() || (*e).path.is_null() {
                return None;
            }
            Some((CStr::from_ptr((*e).path).to_bytes(), (*e).mode))
        }
    }

    /// First position in `lo..hi` whose path is not below `key` (the index
    /// is sorted by path bytes).
    fn lower_bound(&self, mut lo: usize, mut hi: usize, key: &[u8]) -> usize {
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.at(mid) {
                Some((p, _)) if p < key => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo
    }

    /// The positions in `lo..hi` of the entries under folder `dir/`.
    fn under(&self, lo: usize, hi: usize, dir: &[u8]) -> (usize, usize) {
        let mut key = dir.to_vec();
        key.push(b'/');
        let start = self.lower_bound(lo, hi, &key);
        // '0' is the byte after '/': the first path past the folder.
        if let Some(last) = key.last_mut() {
            *last = b'0';
        }
        (start, self.lower_bound(start, hi, &key))
    }

    /// The mode of the entry for exactly `path` in `lo..hi`, if there is one.
    fn find(&self, lo: usize, hi: usize, path: &[u8]) -> Option<u32> {
        let at = self.lower_bound(lo, hi, path);
        (at < hi)
            .then(|| self.at(at))
            .flatten()
            .filter(|(p, _)| *p == path)
            .map(|(_, mode)| mode)
    }
}

/// Every untracked, not ignored file under `root` (notebook-relative).
/// Folders that cannot be read are skipped (as git does, with a warning).
pub(super) fn untracked_files(
    repo: &Repository,
    root: &Path,
    index: &Index,
    sources: &mut Sources,
) -> Vec<PathBuf> {
    let entries = Entries::new(index);
    let mut walk = Walk {
        repo,
        root,
        entries: &entries,
        sources,
        found: Vec::new(),
    };
    walk.folder(&[], 0, entries.len);
    walk.found
}

/// State of one walk.
struct Walk<'w, 'a> {
    repo: &'w Repository,
    root: &'w Path,
    entries: &'w Entries<'a>,
    sources: &'w mut Sources,
    found: Vec<PathBuf>,
}

impl Walk<'_, '_> {
    /// Walk folder `rel` ("" = the root), whose tracked entries are `lo..hi`.
    ///
    /// The names are sorted and walked alongside the index's entries (both
    /// in byte order), so a tracked file costs one comparison, not a search.
    fn folder(&mut self, rel: &[u8], lo: usize, hi: usize) {
        let Ok(listing) = std::fs::read_dir(self.root.join(OsStr::from_bytes(rel))) else {
            return;
        };
        let mut items: Vec<(std::ffi::OsString, std::fs::FileType)> = listing
            .flatten()
            .filter_map(|item| Some((item.file_name(), item.file_type().ok()?)))
            .filter(|(name, _)| name.as_bytes() != b".git")
            .collect();
        items.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let skip = if rel.is_empty() { 0 } else { rel.len() + 1 };
        // The entry's path below this folder.
        let below = |i: usize| {
            self.entries
                .at(i)
                .map_or(&[][..], |(p, _)| p.get(skip..).unwrap_or_default())
        };
        let mut cursor = lo;
        let mut dirs = Vec::new();
        let mut files = Vec::new();
        for (name, kind) in &items {
            let name = name.as_bytes();
            while cursor < hi && below(cursor) < name {
                cursor += 1;
            }
            let tracked = cursor < hi && below(cursor) == name;
            if kind.is_dir() {
                dirs.push(name);
            } else if (kind.is_file() || kind.is_symlink()) && !tracked {
                files.push(name);
            }
        }
        for name in files {
            let path = join(rel, name);
            if !self.ignored(&path) {
                self.found.push(PathBuf::from(OsStr::from_bytes(&path)));
            }
        }
        for name in dirs {
            self.subfolder(join(rel, name), lo, hi);
        }
    }

    /// A folder seen in its parent, whose entries are within `lo..hi`.
    fn subfolder(&mut self, path: Vec<u8>, lo: usize, hi: usize) {
        if self.entries.find(lo, hi, &path) == Some(GITLINK) {
            return;
        }
        let (start, end) = self.entries.under(lo, hi, &path);
        if start == end {
            let full = self.root.join(OsStr::from_bytes(&path));
            if full.join(".git").symlink_metadata().is_ok() || self.ignored(&path) {
                return;
            }
        }
        self.folder(&path, start, end);
    }

    /// Whether git ignores the untracked `path`; not ignored when libgit2
    /// cannot tell (listing a file too many is harmless).
    fn ignored(&mut self, path: &[u8]) -> bool {
        let rel = Path::new(OsStr::from_bytes(path));
        self.sources.may_be_ignored(rel) && self.repo.is_path_ignored(rel).unwrap_or(false)
    }
}

/// `rel/name` ("" = the root).
fn join(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = Vec::with_capacity(rel.len() + 1 + name.len());
    if !rel.is_empty() {
        path.extend_from_slice(rel);
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}
