//! Bringing stale stat data in the index up to date, before a scan of the
//! whole work tree (start-up, a lost event).
//!
//! A notebook that was copied, restored from a backup or checked out by
//! another tool has index entries whose recorded stat data (inode, times) no
//! longer match the files, though their content does. Without this, every
//! scan hashes every such file again (libgit2's status hashes one at a time
//! and never writes what it learnt back): 100,000 files took 7.6 s at every
//! start. Here the files are hashed, and the entries whose content matched
//! get the files' current stat data, written back to the index like `git
//! update-index --refresh` does: the next scan (and the user's own `git
//! status`) finds them clean by `stat` alone.
//!
//! The same pass also judges each tracked file (changed or not) for the
//! start-up scan (`pending`), so no file is `stat`ed twice.
//!
//! Only stat data changes: an entry's object id, mode, flags and path are
//! never touched, and an entry whose file differs keeps its old stat data
//! (the scan then reports the file as changed, as before).

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use git2::{Binding, Index, IndexEntry, ObjectType, Oid, Repository};

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
    let look = Look {
        judge: false,
        filemode: true,
        apply: true,
    };
    Ok(look_at_files(root, index, index_mtime, look).refreshed)
}

/// What one pass over every tracked file should do.
#[derive(Clone, Copy, Debug)]
pub(super) struct Look {
    /// Decide for every entry whether its file differs from it (hashing
    /// where stat data cannot tell), for the pending list.
    pub judge: bool,
    /// `core.fileMode`: the owner's executable bit counts (git's rule).
    pub filemode: bool,
    /// Write fresh stat data into the (in-memory) index.
    pub apply: bool,
}

/// What a pass over every tracked file found.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// Entries hashed and entries given fresh stat data.
    pub refreshed: Refreshed,
    /// With `Look::judge`: tracked paths whose file differs from the entry
    /// (content, kind, executable bit) or is gone. A file that could not be
    /// read or that changed during the pass is listed too: committing an
    /// unchanged file is a no-op, missing a changed one is not.
    pub changed: Vec<Vec<u8>>,
}

/// One `fstatat` per eligible entry, hashing the files whose
/// stat data does not prove them unchanged; see [`Look`] for what is done
/// with the answers. Entries that are not eligible (gitlinks, conflicts,
/// skip-worktree, intent-to-add) are not looked at.
pub(super) fn look_at_files(
    root: &Path,
    index: &mut Index,
    index_mtime: Option<(i64, i64)>,
    look: Look,
) -> Scan {
    let (now_s, now_ns) = coarse_now();
    let cutoff = (now_s - 1, now_ns);
    let total = index.len();
    // The judging scan runs on one thread: on two cores, two threads took
    // 20 % more CPU (436 vs 364 ms on 100,000 stale files; the kernel's
    // per-process descriptor table and folder entries are shared) for 20 %
    // less wall time, and its target is CPU (no more than `git status`).
    let threads = if look.judge {
        1
    } else {
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
            .clamp(1, 8)
    };
    let mut out = Scan::default();
    // In batches: copies of a million entries (paths included) would cost
    // more memory than the index itself. Positions stay valid: only stat
    // fields change.
    for start in (0..total).step_by(BATCH) {
        let batch: Vec<(usize, IndexEntry)> = (start..(start + BATCH).min(total))
            .filter_map(|i| index.get(i).map(|e| (i, e)))
            .filter(|(_, e)| eligible(e))
            .collect();
        let chunk = batch.len().div_ceil(threads).max(1);
        let results: Vec<Part> = std::thread::scope(|s| {
            let handles: Vec<_> = batch
                .chunks(chunk)
                .enumerate()
                .map(|(i, part)| {
                    s.spawn(move || check_part(root, part, i * chunk, index_mtime, cutoff, look))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for part in results {
            out.refreshed.hashed += part.hashed;
            out.changed.extend(part.changed);
            if !look.apply {
                continue;
            }
            for (at, st) in part.updated {
                let Some((pos, entry)) = batch.get(at) else {
                    continue;
                };
                if set_stat_in_place(index, *pos, entry, &st) {
                    out.refreshed.updated += 1;
                }
            }
        }
    }
    out
}

/// libgit2's in-memory flag for an entry known to match its file (it skips
/// the racily-clean check when the index is written).
const UPTODATE: u16 = 1 << 2;

/// Give the index's own entry at `pos` the file's stat data `st`, in place,
/// if it still has the path, id and mode of `seen` (the entry as the file
/// was checked against); false when it does not.
///
/// `Index::add` would do the same at a much higher price: it checks that the
/// object exists and invalidates the cached tree of every directory above
/// the path (a linear scan of each directory's children: quadratic on a
/// million files), though stat data is not part of any tree. git's own
/// refresh keeps the cached trees, and so does this.
fn set_stat_in_place(index: &mut Index, pos: usize, seen: &IndexEntry, st: &libc::stat) -> bool {
    // SAFETY: `index.raw()` is the live `git_index` owned by `index`, which
    // is borrowed mutably, so nothing else reads or writes it meanwhile.
    // `git_index_get_byindex` returns the index's own entry (or NULL), valid
    // until the index changes; it is used before returning, and its path is
    // a NUL-terminated string owned by the index. libgit2 writes
    // stat fields through this same pointer itself (`truncate_racily_clean`
    // in index.c). Only stat fields and the in-memory UPTODATE flag change:
    // the path, id, mode, flags and so the lookup keys stay as they were.
    unsafe {
        let found = libgit2_sys::git_index_get_byindex(index.raw(), pos as libc::size_t);
        if found.is_null() || (*found).path.is_null() {
            return false;
        }
        let entry = &mut *found.cast_mut();
        if std::ffi::CStr::from_ptr(entry.path).to_bytes() != seen.path.as_slice()
            || entry.id.id != *seen.id.as_bytes()
            || entry.mode != seen.mode
        {
            return false;
        }
        // As git records stat data: in 32 bits.
        entry.ctime = libgit2_sys::git_index_time {
            seconds: st.st_ctime as i32,
            nanoseconds: st.st_ctime_nsec as u32,
        };
        entry.mtime = libgit2_sys::git_index_time {
            seconds: st.st_mtime as i32,
            nanoseconds: st.st_mtime_nsec as u32,
        };
        entry.dev = st.st_dev as u32;
        entry.ino = st.st_ino as u32;
        entry.uid = st.st_uid;
        entry.gid = st.st_gid;
        entry.file_size = st.st_size as u32;
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

/// One thread's share of a pass.
#[derive(Default)]
struct Part {
    /// Entries whose content was hashed.
    hashed: usize,
    /// Entries whose content matched: where in the batch, the file's stat.
    updated: Vec<(usize, libc::stat)>,
    /// Paths judged changed (only with `Look::judge`).
    changed: Vec<Vec<u8>>,
}

/// One thread's share.
///
/// Files are looked at relative to their folder (`fstatat`, `openat` on one
/// descriptor per folder, the index being sorted by path): a full path
/// lookup per call was a third of the pass.
fn check_part(
    root: &Path,
    part: &[(usize, IndexEntry)],
    offset: usize,
    index_mtime: Option<(i64, i64)>,
    cutoff: (i64, i64),
    look: Look,
) -> Part {
    let mut out = Part::default();
    let mut folder: Option<(Vec<u8>, Option<Dir>)> = None;
    for (at, (_, e)) in part.iter().enumerate().map(|(i, x)| (offset + i, x)) {
        let (dir, name) = match e.path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&e.path[..i], &e.path[i + 1..]),
            None => (&e.path[..0], &e.path[..]),
        };
        if folder.as_ref().is_none_or(|(d, _)| d.as_slice() != dir) {
            folder = Some((dir.to_vec(), Dir::open_under(root, dir)));
        }
        // A folder that is gone, is a symlink or cannot be opened: git sees
        // its files as deleted (or cannot read them).
        let changed = |out: &mut Part| {
            if look.judge {
                out.changed.push(e.path.clone());
            }
        };
        let Some((_, Some(dirfd))) = &folder else {
            changed(&mut out);
            continue;
        };
        let Ok(name) = CString::new(name) else {
            changed(&mut out);
            continue;
        };
        let Some(st) = dirfd.stat(&name) else {
            changed(&mut out);
            continue;
        };
        let before = Stamp::of_stat(&st);
        let racy = is_racy(e, index_mtime);
        if before.matches(e) && !racy {
            continue;
        }
        // Same kind and, per git's rule (the owner's bit, unless
        // core.fileMode is off), the same executable bit, or it changed.
        let kind = st.st_mode & libc::S_IFMT;
        let kind_matches = if kind == libc::S_IFLNK {
            e.mode == 0o120000
        } else if kind == libc::S_IFREG {
            let exec = if look.filemode {
                st.st_mode & 0o100 != 0
            } else {
                e.mode == 0o100755
            };
            e.mode == if exec { 0o100755 } else { 0o100644 }
        } else {
            false
        };
        if !kind_matches {
            changed(&mut out);
            continue;
        }
        let size_differs = e.file_size != st.st_size as u32;
        // git takes a recorded size that differs as a change without reading
        // the file; a recorded 0 (set by `read-tree`) proves nothing.
        if size_differs && e.file_size != 0 {
            changed(&mut out);
            continue;
        }
        let recent = before.mtime >= cutoff;
        if !look.judge && (size_differs || recent) {
            continue;
        }
        out.hashed += 1;
        if dirfd.content_id(&name, kind == libc::S_IFLNK, st.st_size as usize) != Some(e.id) {
            changed(&mut out);
            continue;
        }
        // Recording `before` is safe without a second look: the file's
        // mtime is over a second old, so any write since `before` (during the
        // read too) left other times than these, and the next scan hashes it.
        if !size_differs && !recent {
            out.updated.push((at, st));
        }
    }
    out
}

/// An open folder, for looking at its files by name.
struct Dir(std::os::fd::OwnedFd);

impl Dir {
    /// The folder `rel` (notebook-relative, "" = the root) opened one
    /// component at a time without following symlinks, as git sees paths:
    /// a symlink where a folder was makes the files below it gone. `None`
    /// when it is gone, not a folder or cannot be opened.
    fn open_under(root: &Path, rel: &[u8]) -> Option<Dir> {
        let mut dir = Dir::open(root)?;
        for part in rel.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
            let name = CString::new(part).ok()?;
            // SAFETY: a valid descriptor and NUL-terminated name; the
            // descriptor returned is owned by the `OwnedFd` alone.
            dir = unsafe {
                let fd = libc::openat(
                    dir.0.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                );
                if fd < 0 {
                    return None;
                }
                Dir(std::os::fd::OwnedFd::from_raw_fd(fd))
            };
        }
        Some(dir)
    }

    /// `path` (absolute), `None` when it is gone or not a folder.
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
        // Read until `size` bytes are in, like git: a regular file's read
        // comes back short only at its end, and the spare byte catches a
        // file that grew, without one more `read` per file to see the end.
        let mut data = vec![0u8; size + 1];
        let mut got = 0;
        while got < size {
            match (&file).read(&mut data[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        // More or fewer bytes than its size: it changed meanwhile.
        if got != size {
            return None;
        }
        Oid::hash_object(ObjectType::Blob, &data[..size]).ok()
    }
}
