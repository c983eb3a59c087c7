//! Bringing stale stat data in the index up to date, before a scan of the
//! whole work tree (start-up, a lost event).
//!
//! A notebook that was copied, restored from a backup or checked out by
//! another tool has index entries whose recorded stat data (inode, times) no
//! longer match the files, though their content does. Without this, every
//! scan hashes every such file again (libgit2's status hashes one at a time
//! and never writes what it learnt back): 100,000 files took 7.6 s at every
//! start. Here the files are hashed on all cores, and the entries whose
//! content matched get the files' current stat data, written back to the
//! index like `git update-index --refresh` does: the next scan (and the
//! user's own `git status`) finds them clean by `stat` alone.
//!
//! Only stat data changes: an entry's object id, mode, flags and path are
//! never touched, and an entry whose file differs keeps its old stat data
//! (the scan then reports the file as changed, as before).

use std::ffi::{CString, OsStr};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use git2::{Binding, Index, IndexEntry, IndexTime, ObjectType, Oid, Repository};

use super::stage::{coarse_now, Stamp};

/// Entry flags (extended) that leave an entry alone: skip-worktree and
/// intent-to-add entries do not describe a file's content.
const SKIP_WORKTREE: u16 = 1 << 14;
const INTENT_TO_ADD: u16 = 1 << 13;
/// The stage bits of an entry's flags (0 = a normal entry).
const STAGE_MASK: u16 = 0x3000;

/// Entries looked at to decide whether the index looks stale.
const SAMPLE: usize = 256;
/// Entries copied out of the index at a time.
const BATCH: usize = 16_384;

/// How many entries one refresh changed, out of how many it had to hash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Refreshed {
    /// Entries whose stat data did not match their file (content hashed).
    pub hashed: usize,
    /// Entries given new stat data (their content matched).
    pub updated: usize,
}

/// True when hashing a file's bytes gives the id git would store for it:
/// there is no attributes file at all (so no `filter`, `text`, `eol`,
/// `ident` or encoding attribute, whatever drivers are configured) and
/// `core.autocrlf` is off. When it is not, nothing is refreshed (libgit2's
/// own scan applies the filters).
pub(super) fn raw_bytes_are_blobs(repo: &Repository, index: &Index) -> bool {
    let config = repo.config().and_then(|mut c| c.snapshot()).ok();
    let autocrlf = config
        .as_ref()
        .and_then(|c| c.get_str("core.autocrlf").ok().map(str::to_string));
    if autocrlf.is_some_and(|v| !v.eq_ignore_ascii_case("false")) {
        return false;
    }
    let attributes_file = config
        .as_ref()
        .and_then(|c| c.get_path("core.attributesFile").ok())
        .or_else(|| {
            std::env::var_os("XDG_CONFIG_HOME")
                .map(std::path::PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))
                .map(|d| d.join("git/attributes"))
        });
    let root_attributes = repo.workdir().map(|w| w.join(".gitattributes"));
    if attributes_file.is_some_and(|f| f.exists())
        || root_attributes.is_some_and(|f| f.exists())
        || repo.path().join("info/attributes").exists()
    {
        return false;
    }
    !index
        .iter()
        .any(|e| e.path == b".gitattributes" || e.path.ends_with(b"/.gitattributes"))
}

/// Whether a sample of the entries (evenly spaced) has stale stat data: a
/// copy, a restore or a checkout by another tool leaves nearly every entry
/// stale, while an index gitlockd or git keeps up to date has none (then the
/// scan's own `stat` of every file is enough, and a refresh would double it;
/// a few files edited while gitlockd was stopped are hashed by the scan).
pub(super) fn looks_stale(root: &Path, index: &Index, index_mtime: Option<(i64, i64)>) -> bool {
    let total = index.len();
    let step = (total / SAMPLE).max(1);
    (0..total)
        .step_by(step)
        .filter_map(|i| index.get(i))
        .filter(eligible)
        .any(|e| {
            let full = root.join(std::ffi::OsStr::from_bytes(&e.path));
            std::fs::symlink_metadata(full)
                .is_ok_and(|meta| !Stamp::of(&meta).matches(&e) || is_racy(&e, index_mtime))
        })
}

/// Entries that describe a file's content: stage 0, not skip-worktree or
/// intent-to-add, a regular file or a symlink.
fn eligible(e: &IndexEntry) -> bool {
    e.flags & STAGE_MASK == 0
        && e.flags_extended & (SKIP_WORKTREE | INTENT_TO_ADD) == 0
        && matches!(e.mode, 0o100644 | 0o100755 | 0o120000)
}

/// Give every entry of `index` whose file's content matches it but whose
/// stat data does not the file's current stat data. `index_mtime`: when the
/// index file was written (an entry not older is "racily clean" and is
/// checked too). Files changed in the last second keep their stale data, so
/// a refreshed entry is always older than the index written after it.
pub(super) fn refresh(
    root: &Path,
    index: &mut Index,
    index_mtime: Option<(i64, i64)>,
) -> Result<Refreshed, git2::Error> {
    let (now_s, now_ns) = coarse_now();
    let cutoff = (now_s - 1, now_ns);
    let total = index.len();
    let threads = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .clamp(1, 8);
    let mut out = Refreshed::default();
    // In batches: copies of a million entries (paths included) would cost
    // more memory than the index itself. Positions stay valid: only stat
    // fields change.
    for start in (0..total).step_by(BATCH) {
        let batch: Vec<IndexEntry> = (start..(start + BATCH).min(total))
            .filter_map(|i| index.get(i))
            .filter(eligible)
            .collect();
        let chunk = batch.len().div_ceil(threads).max(1);
        let results: Vec<(usize, Vec<IndexEntry>)> = std::thread::scope(|s| {
            let handles: Vec<_> = batch
                .chunks(chunk)
                .map(|part| s.spawn(move || check_part(root, part, index_mtime, cutoff)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for (hashed, updated) in results {
            out.hashed += hashed;
            for entry in updated {
                if set_stat_in_place(index, &entry) {
                    out.updated += 1;
                }
            }
        }
    }
    Ok(out)
}

/// libgit2's in-memory flag for an entry known to match its file (it skips
/// the racily-clean check when the index is written).
const UPTODATE: u16 = 1 << 2;

/// Give the index's own entry for `fresh.path` the stat data of `fresh`, in
/// place, if it still has `fresh`'s id and mode; false when it does not.
///
/// `Index::add` would do the same at a much higher price: it checks that the
/// object exists and invalidates the cached tree of every directory above
/// the path (a linear scan of each directory's children: quadratic on a
/// million files), though stat data is not part of any tree. git's own
/// refresh keeps the cached trees, and so does this.
fn set_stat_in_place(index: &mut Index, fresh: &IndexEntry) -> bool {
    let Ok(path) = CString::new(fresh.path.clone()) else {
        return false;
    };
    // SAFETY: `index.raw()` is the live `git_index` owned by `index`, which
    // is borrowed mutably, so nothing else reads or writes it meanwhile.
    // `git_index_get_bypath` returns the index's own entry (or NULL), valid
    // until the index changes; it is used before returning. libgit2 writes
    // stat fields through this same pointer itself (`truncate_racily_clean`
    // in index.c). Only stat fields and the in-memory UPTODATE flag change:
    // the path, id, mode, flags and so the lookup keys stay as they were.
    unsafe {
        let found = libgit2_sys::git_index_get_bypath(index.raw(), path.as_ptr(), 0);
        if found.is_null() {
            return false;
        }
        let entry = &mut *found.cast_mut();
        if entry.id.id != *fresh.id.as_bytes() || entry.mode != fresh.mode {
            return false;
        }
        entry.ctime = libgit2_sys::git_index_time {
            seconds: fresh.ctime.seconds(),
            nanoseconds: fresh.ctime.nanoseconds(),
        };
        entry.mtime = libgit2_sys::git_index_time {
            seconds: fresh.mtime.seconds(),
            nanoseconds: fresh.mtime.nanoseconds(),
        };
        entry.dev = fresh.dev;
        entry.ino = fresh.ino;
        entry.uid = fresh.uid;
        entry.gid = fresh.gid;
        entry.file_size = fresh.file_size;
        entry.flags_extended |= UPTODATE;
    }
    true
}

/// git's "racily clean": the file may have changed in the same clock tick
/// as the index was written, so matching stat data proves nothing.
fn is_racy(e: &IndexEntry, index_mtime: Option<(i64, i64)>) -> bool {
    index_mtime.is_none_or(|(s, ns)| {
        (
            i64::from(e.mtime.seconds()),
            i64::from(e.mtime.nanoseconds()),
        ) >= (s, ns)
    })
}

/// One thread's share: (entries hashed, entries with new stat data).
///
/// Files are looked at relative to their folder (`fstatat`, `openat` on one
/// descriptor per folder, the index being sorted by path): a full path
/// lookup per call was a third of the pass.
fn check_part(
    root: &Path,
    part: &[IndexEntry],
    index_mtime: Option<(i64, i64)>,
    cutoff: (i64, i64),
) -> (usize, Vec<IndexEntry>) {
    let mut hashed = 0;
    let mut updated = Vec::new();
    let mut folder: Option<(Vec<u8>, Option<Dir>)> = None;
    for e in part {
        let (dir, name) = match e.path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&e.path[..i], &e.path[i + 1..]),
            None => (&e.path[..0], &e.path[..]),
        };
        if folder.as_ref().is_none_or(|(d, _)| d.as_slice() != dir) {
            folder = Some((dir.to_vec(), Dir::open(&root.join(OsStr::from_bytes(dir)))));
        }
        let Some((_, Some(dirfd))) = &folder else {
            continue;
        };
        let Ok(name) = CString::new(name) else {
            continue;
        };
        let Some(st) = dirfd.stat(&name) else {
            continue;
        };
        let before = Stamp::of_stat(&st);
        let racy = is_racy(e, index_mtime);
        if before.matches(e) && !racy {
            continue;
        }
        // Same kind, same executable bit and same size, or it changed.
        let kind = st.st_mode & libc::S_IFMT;
        let kind_matches = if kind == libc::S_IFLNK {
            e.mode == 0o120000
        } else if kind == libc::S_IFREG {
            let exec = st.st_mode & 0o111 != 0;
            e.mode == if exec { 0o100755 } else { 0o100644 }
        } else {
            false
        };
        if !kind_matches || e.file_size != st.st_size as u32 || before.mtime >= cutoff {
            continue;
        }
        hashed += 1;
        if dirfd.content_id(&name, kind == libc::S_IFLNK, st.st_size as usize) != Some(e.id)
            || dirfd.stat(&name).map(|s| Stamp::of_stat(&s)) != Some(before)
        {
            continue;
        }
        updated.push(with_stat(e, &st));
    }
    (hashed, updated)
}

/// An open folder, for looking at its files by name.
struct Dir(std::os::fd::OwnedFd);

impl Dir {
    /// `None` when it is gone or not a folder (its entries are left alone).
    fn open(path: &Path) -> Option<Dir> {
        let path = CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: a valid NUL-terminated path; the descriptor returned is
        // owned by the `OwnedFd` alone.
        unsafe {
            let fd = libc::open(
                path.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            );
            (fd >= 0).then(|| Dir(std::os::fd::OwnedFd::from_raw_fd(fd)))
        }
    }

    /// `lstat` of `name` in this folder.
    fn stat(&self, name: &CString) -> Option<libc::stat> {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: a valid descriptor, a NUL-terminated name and a buffer the
        // size of `struct stat`, which the call fills on success.
        unsafe {
            let rc = libc::fstatat(
                self.0.as_raw_fd(),
                name.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            );
            (rc == 0).then(|| st.assume_init())
        }
    }

    /// The blob id of the file's (or symlink's) current content.
    fn content_id(&self, name: &CString, symlink: bool, size: usize) -> Option<Oid> {
        if symlink {
            let mut buf = vec![0u8; size + 1];
            // SAFETY: a valid descriptor and name, and a buffer of `buf.len()` bytes.
            let n = unsafe {
                libc::readlinkat(
                    self.0.as_raw_fd(),
                    name.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            // A target longer than its size said: it changed meanwhile.
            let n = usize::try_from(n).ok().filter(|&n| n <= size)?;
            return Oid::hash_object(ObjectType::Blob, &buf[..n]).ok();
        }
        // SAFETY: a valid descriptor and name; the descriptor returned is
        // owned by the `File` alone.
        let file = unsafe {
            let fd = libc::openat(
                self.0.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            );
            if fd < 0 {
                return None;
            }
            std::fs::File::from_raw_fd(fd)
        };
        let mut data = Vec::with_capacity(size + 1);
        (&file).take(size as u64 + 1).read_to_end(&mut data).ok()?;
        // More or fewer bytes than its size: it changed meanwhile.
        if data.len() != size {
            return None;
        }
        Oid::hash_object(ObjectType::Blob, &data).ok()
    }
}

/// `e` with the file's stat data (as git records it, in 32 bits).
fn with_stat(e: &IndexEntry, st: &libc::stat) -> IndexEntry {
    IndexEntry {
        ctime: IndexTime::new(st.st_ctime as i32, st.st_ctime_nsec as u32),
        mtime: IndexTime::new(st.st_mtime as i32, st.st_mtime_nsec as u32),
        dev: st.st_dev as u32,
        ino: st.st_ino as u32,
        mode: e.mode,
        uid: st.st_uid,
        gid: st.st_gid,
        file_size: st.st_size as u32,
        id: e.id,
        flags: e.flags,
        flags_extended: e.flags_extended,
        path: e.path.clone(),
    }
}
