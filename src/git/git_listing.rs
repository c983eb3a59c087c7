//! Asking `git` which files it sees: the batch's files as `git add -A`
//! would take them, and what changed (`git status`), for repositories
//! libgit2 cannot read faithfully (split or sparse index, sparse checkout).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{GitError, GitManager};

/// Longest argument list handed to one `git ls-files` (bytes of paths).
const ARGS_CHUNK: usize = 64 * 1024;

impl GitManager {
    /// The files under `rels` (all files when empty) that `git add -A` may
    /// touch: tracked ones (ignored or not, present or deleted) and untracked
    /// ones git does not ignore. Skip-worktree entries and nested
    /// repositories are left out; unmerged entries mean a conflict.
    /// Each file comes with whether it is tracked.
    pub(super) fn list_files(&self, rels: &[PathBuf]) -> Result<Vec<(PathBuf, bool)>, GitError> {
        let mut out = BTreeSet::new();
        let base = [
            "ls-files",
            "-z",
            "-t",
            "-c",
            "-o",
            "--exclude-standard",
            "--",
        ];
        let mut chunks: Vec<Vec<&OsStr>> = vec![Vec::new()];
        let mut size = 0;
        for rel in rels {
            if size > ARGS_CHUNK {
                chunks.push(Vec::new());
                size = 0;
            }
            size += rel.as_os_str().len() + 1;
            if let Some(chunk) = chunks.last_mut() {
                chunk.push(rel.as_os_str());
            }
        }
        for chunk in chunks {
            if chunk.is_empty() && !rels.is_empty() {
                continue;
            }
            let mut args: Vec<&OsStr> = base.iter().map(OsStr::new).collect();
            args.extend(chunk);
            let listed =
                self.git
                    .run_ok(&self.root, &args, &[("GIT_LITERAL_PATHSPECS", "1")], None)?;
            for record in listed.stdout.split(|b| *b == 0) {
                let Some((&tag, rest)) = record.split_first() else {
                    continue;
                };
                let Some(path) = rest.strip_prefix(b" ") else {
                    continue;
                };
                match tag {
                    b'M' => {
                        return Err(GitError::Busy {
                            state: "conflicts".to_string(),
                        })
                    }
                    // Sparse checkout: not ours to record, in or out.
                    b'S' => continue,
                    // A nested repository (`dir/`).
                    _ if path.ends_with(b"/") => continue,
                    _ => {
                        out.insert((PathBuf::from(OsStr::from_bytes(path)), tag != b'?'));
                    }
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Every path git reports as changed (staged, unstaged or untracked),
    /// through `git status`, for repositories libgit2 cannot read faithfully.
    pub(super) fn pending_changes_via_git(
        &self,
        filter: &crate::filter::PathFilter,
    ) -> Result<Vec<PathBuf>, GitError> {
        self.git.check_usable()?;
        let out = self.git.run_ok(
            &self.root,
            &[
                "--no-optional-locks",
                "status",
                "--porcelain=v1",
                "-z",
                "--untracked-files=all",
                "--no-renames",
                "--ignore-submodules=all",
            ],
            &[],
            None,
        )?;
        let mut paths = BTreeSet::new();
        for record in out.stdout.split(|b| *b == 0) {
            if record.len() < 4 || record.ends_with(b"/") {
                continue;
            }
            let path = PathBuf::from(OsStr::from_bytes(&record[3..]));
            if !filter.is_excluded(&path) {
                paths.insert(path);
            }
        }
        Ok(paths.into_iter().collect())
    }
}

/// Files that cannot be read are split off, with the reason: `git add`
/// would fail on them and take the whole batch down with it. The notebook
/// lists them (and warns once), as it does for the libgit2 path.
pub(super) fn split_unreadable(
    root: &Path,
    files: Vec<PathBuf>,
) -> (Vec<PathBuf>, Vec<(PathBuf, String)>) {
    let mut readable = Vec::with_capacity(files.len());
    let mut unreadable = Vec::new();
    for rel in files {
        let full = root.join(&rel);
        match std::fs::symlink_metadata(&full) {
            // Non-blocking: the path may have become a FIFO since the stat.
            Ok(m) if m.is_file() => match std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&full)
            {
                Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                    unreadable.push((rel, e.to_string()));
                }
                _ => readable.push(rel),
            },
            _ => readable.push(rel),
        }
    }
    (readable, unreadable)
}

/// `paths` as git's `--pathspec-file-nul` input.
pub(super) fn nul_list(paths: &[PathBuf]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in paths {
        out.extend_from_slice(p.as_os_str().as_bytes());
        out.push(0);
    }
    out
}
