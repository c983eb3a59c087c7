//! The tree id the index file itself records for its whole content (its
//! cache-tree, "TREE" extension), read straight from the file.
//!
//! Whether anything is staged is "does the index's tree equal HEAD's": git
//! and libgit2 keep the tree id of every folder whose entries did not change
//! since it was last computed, and invalidate it (and every folder above) on
//! any change. When the root's id is valid and equals HEAD's tree, nothing
//! is staged, and the start-up scan skips comparing 100,000 entries with
//! HEAD's tree (~35 ms). libgit2 does not expose the cache, so the index file
//! is read here; any doubt (another format, no extension, a root marked
//! invalid) answers `None` and the caller compares entry by entry.

use std::io::{BufReader, Read};
use std::path::Path;

use git2::Oid;

/// Length of a SHA-1 object id, the only kind libgit2 reads.
const ID_LEN: usize = 20;
/// Fixed part of an index entry before its path (versions 2 to 4).
const ENTRY_FIXED: usize = 62;
/// The "extended flags follow" bit of an entry's flags (version 3 and up).
const EXTENDED: u16 = 0x4000;
/// Path length bits of an entry's flags (0xfff: look for the NUL).
const NAME_MASK: u16 = 0x0fff;

/// The valid tree id of the whole index in the index file at `path`, if it
/// records one. The file is streamed: a 1,000,000-entry index is 77 MiB.
pub(super) fn root_tree(path: &Path) -> Option<Oid> {
    let file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let mut reader = Reader {
        inner: BufReader::with_capacity(64 * 1024, file),
        at: 0,
    };
    root_tree_from(&mut reader, len)
}

/// The same from a reader of an index file of `len` bytes.
fn root_tree_from<R: Read>(r: &mut Reader<R>, len: u64) -> Option<Oid> {
    let header: [u8; 12] = r.array()?;
    if &header[..4] != b"DIRC" {
        return None;
    }
    let version = u32::from_be_bytes(header[4..8].try_into().ok()?);
    let count = u32::from_be_bytes(header[8..12].try_into().ok()?);
    if !(2..=4).contains(&version) {
        return None;
    }
    for _ in 0..count {
        skip_entry(r, version)?;
    }
    // Extensions (a 4-byte signature, a 4-byte size, the data) up to the
    // trailer's checksum.
    let end = len.checked_sub(ID_LEN as u64)?;
    while r.at + 8 <= end {
        let head: [u8; 8] = r.array()?;
        let size = u64::from(u32::from_be_bytes(head[4..8].try_into().ok()?));
        if &head[..4] == b"TREE" {
            // The root's record comes first and is short.
            let mut first = vec![0u8; size.min(128) as usize];
            r.exact(&mut first)?;
            return root_of_tree_extension(&first);
        }
        r.skip(size)?;
    }
    None
}

/// A reader that counts the bytes it has gone past.
struct Reader<R> {
    inner: R,
    at: u64,
}

impl<R: Read> Reader<R> {
    fn exact(&mut self, buf: &mut [u8]) -> Option<()> {
        self.inner.read_exact(buf).ok()?;
        self.at += buf.len() as u64;
        Some(())
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut buf = [0u8; N];
        self.exact(&mut buf)?;
        Some(buf)
    }

    fn skip(&mut self, n: u64) -> Option<()> {
        let copied = std::io::copy(&mut (&mut self.inner).take(n), &mut std::io::sink()).ok()?;
        self.at += copied;
        (copied == n).then_some(())
    }

    /// Bytes up to and including the next NUL; how many.
    fn through_nul(&mut self) -> Option<u64> {
        let mut n = 0;
        loop {
            let [b] = self.array::<1>()?;
            n += 1;
            if b == 0 {
                return Some(n);
            }
        }
    }
}

/// Go past one index entry.
fn skip_entry<R: Read>(r: &mut Reader<R>, version: u32) -> Option<()> {
    let fixed: [u8; ENTRY_FIXED] = r.array()?;
    let flags = u16::from_be_bytes(fixed[60..62].try_into().ok()?);
    let mut head = ENTRY_FIXED as u64;
    if version >= 3 && flags & EXTENDED != 0 {
        r.skip(2)?;
        head += 2;
    }
    if version == 4 {
        // A varint (bytes to drop from the previous path), then the rest of
        // the path up to its NUL; no padding.
        while r.array::<1>()?[0] & 0x80 != 0 {}
        r.through_nul()?;
        return Some(());
    }
    // The path and one to eight NULs pad the entry to a multiple of eight.
    let total = match flags & NAME_MASK {
        NAME_MASK => {
            let through = r.through_nul()?;
            let total = (head + through - 1 + 8) & !7;
            return r.skip(total - head - through);
        }
        n => (head + u64::from(n) + 8) & !7,
    };
    r.skip(total - head)
}

/// The root's id from a TREE extension: its first record is the root, as
/// `"" NUL entry-count SP subtree-count LF id` (no id when the count is -1).
fn root_of_tree_extension(body: &[u8]) -> Option<Oid> {
    let rest = body.strip_prefix(b"\0")?;
    let line_end = rest.iter().position(|&b| b == b'\n')?;
    let counts = std::str::from_utf8(&rest[..line_end]).ok()?;
    let entries: i64 = counts.split(' ').next()?.parse().ok()?;
    if entries < 0 {
        return None;
    }
    Oid::from_bytes(rest.get(line_end + 1..line_end + 1 + ID_LEN)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_tree_of(data: &[u8]) -> Option<Oid> {
        let mut r = Reader { inner: data, at: 0 };
        root_tree_from(&mut r, data.len() as u64)
    }

    /// An index file with `paths` as entries (version 2) and `tree` as its
    /// extensions.
    fn index_file(paths: &[&str], extensions: &[u8]) -> Vec<u8> {
        let mut out = b"DIRC".to_vec();
        out.extend_from_slice(&2u32.to_be_bytes());
        out.extend_from_slice(&(paths.len() as u32).to_be_bytes());
        for p in paths {
            let start = out.len();
            out.extend_from_slice(&[0u8; 60]);
            out.extend_from_slice(&(p.len() as u16).to_be_bytes());
            out.extend_from_slice(p.as_bytes());
            out.push(0);
            while !(out.len() - start).is_multiple_of(8) {
                out.push(0);
            }
        }
        out.extend_from_slice(extensions);
        out.extend_from_slice(&[0u8; ID_LEN]);
        out
    }

    fn tree_ext(record: &[u8]) -> Vec<u8> {
        let mut out = b"TREE".to_vec();
        out.extend_from_slice(&(record.len() as u32).to_be_bytes());
        out.extend_from_slice(record);
        out
    }

    #[test]
    fn a_valid_root_is_read_past_entries_and_other_extensions() {
        let id = [7u8; ID_LEN];
        let mut record = b"\x002 0\n".to_vec();
        record.extend_from_slice(&id);
        let mut ext = b"UNTR\0\0\0\x03abc".to_vec();
        ext.extend(tree_ext(&record));
        // Paths of lengths that need one and eight padding bytes.
        let file = index_file(&["a", "abcdefg"], &ext);
        assert_eq!(root_tree_of(&file), Some(Oid::from_bytes(&id).expect("id")));
    }

    #[test]
    fn an_invalid_root_or_no_extension_is_no_answer() {
        let file = index_file(&["a"], &tree_ext(b"\0-1 0\n"));
        assert_eq!(root_tree_of(&file), None);
        assert_eq!(root_tree_of(&index_file(&["a"], b"")), None);
        assert_eq!(root_tree_of(b"DIRC"), None);
    }

    /// Against git itself: the root id read from an index file git wrote,
    /// in versions 2 and 4, is what `git write-tree` says.
    #[test]
    fn the_root_is_the_one_git_wrote() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(args)
                .current_dir(root)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .output()
                .expect("git");
            assert!(out.status.success(), "git {args:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        git(&["init", "-q"]);
        for (i, name) in ["a", "b/c", "b/dddddddddddddddd/e", "f.md"]
            .iter()
            .enumerate()
        {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, format!("{i}\n")).expect("write");
        }
        git(&["add", "-A"]);
        for version in ["2", "4"] {
            git(&["update-index", "--index-version", version]);
            let id = git(&["write-tree"]);
            let read = root_tree(&root.join(".git/index")).map(|o| o.to_string());
            assert_eq!(read, Some(id), "index version {version}");
        }
    }
}
