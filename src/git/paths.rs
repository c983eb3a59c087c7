//! Turning a user's path into a notebook-relative one, or refusing it.

use std::path::{Component, Path, PathBuf};

use super::{GitError, GitManager};

impl GitManager {
    /// The notebook-relative, normalized form of `p` (relative to the root, or
    /// absolute inside it; the root itself is the empty path).
    ///
    /// `Forbidden` for a path that leaves the notebook (`..`, an absolute path
    /// elsewhere, a symlinked directory leading outside) or enters `.git`.
    /// A symlinked directory leading inside the notebook is replaced by its
    /// target, as git stores no paths beyond a symlink. The last component is
    /// never followed: a symlink is a file of its own. Takes no lock.
    pub fn resolve_path(&self, p: &Path) -> Result<PathBuf, GitError> {
        let forbidden = |reason: &str| GitError::Forbidden {
            path: p.to_path_buf(),
            reason: reason.to_string(),
        };
        let rel = if p.is_absolute() {
            self.strip_root(p)
                .ok_or_else(|| forbidden("outside the notebook"))?
        } else {
            p.to_path_buf()
        };
        let mut out = normalize(&rel).ok_or_else(|| forbidden("outside the notebook"))?;

        // Follow symlinked directories among the ancestors, from the top, so
        // the result names the real place (or is refused when it leaves).
        let mut i = 1;
        while i < out.components().count() {
            let prefix: PathBuf = out.components().take(i).collect();
            let full = self.root.join(&prefix);
            let is_link = std::fs::symlink_metadata(&full)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false);
            if is_link {
                let target = full
                    .canonicalize()
                    .map_err(|_| forbidden("through a dangling symlink"))?;
                let inside = target
                    .strip_prefix(&self.root)
                    .map_err(|_| forbidden("through a symlink leading outside the notebook"))?
                    .to_path_buf();
                let rest: PathBuf = out.components().skip(i).collect();
                out = inside.join(rest);
                // Restart: the target may itself contain symlinks.
                i = 1;
                continue;
            }
            i += 1;
        }
        if out
            .components()
            .any(|c| c.as_os_str().eq_ignore_ascii_case(".git"))
        {
            return Err(forbidden("inside .git"));
        }
        Ok(out)
    }

    /// `NotFound` unless `rel` (from [`GitManager::resolve_path`]) names
    /// something in the work tree, the index or HEAD: a path in none of
    /// them is a typo, and committing it would silently do nothing. A
    /// deleted tracked file (or folder of them) stays valid, as committing
    /// it records the deletion. Takes no lock.
    pub fn require_known(&self, rel: &Path) -> Result<(), GitError> {
        use std::os::unix::ffi::OsStrExt;
        if rel.as_os_str().is_empty() || self.root.join(rel).symlink_metadata().is_ok() {
            return Ok(());
        }
        let repo = self.open()?;
        let ctx = "looking the path up in the index and HEAD";
        let wanted = rel.as_os_str().as_bytes();
        let index = repo.index().map_err(super::error::git_err(&repo, ctx))?;
        let in_index = index.iter().any(|e| {
            e.path == wanted
                || (e.path.len() > wanted.len()
                    && e.path.starts_with(wanted)
                    && e.path[wanted.len()] == b'/')
        });
        let in_head = repo
            .head()
            .ok()
            .and_then(|h| h.peel_to_tree().ok())
            .is_some_and(|tree| tree.get_path(rel).is_ok());
        if in_index || in_head {
            return Ok(());
        }
        Err(GitError::UnknownPath {
            path: rel.to_path_buf(),
            root: self.root.clone(),
        })
    }

    /// `p` (absolute) relative to the root, also when spelled through a
    /// symlink of the root or one of its ancestors.
    fn strip_root(&self, p: &Path) -> Option<PathBuf> {
        if let Ok(rel) = p.strip_prefix(&self.root) {
            return Some(rel.to_path_buf());
        }
        // Canonicalize the longest existing ancestor, keep the rest as written.
        let mut existing = p;
        let mut rest = Vec::new();
        loop {
            if let Ok(real) = existing.canonicalize() {
                let mut full = real;
                for name in rest.iter().rev() {
                    full.push(name);
                }
                return full.strip_prefix(&self.root).ok().map(Path::to_path_buf);
            }
            rest.push(existing.file_name()?.to_os_string());
            existing = existing.parent()?;
        }
    }
}

/// Lexically normalized relative path: `.` dropped, `..` applied; `None` when
/// it climbs above its start or is absolute.
pub(crate) fn normalize(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_table() {
        for (input, want) in [
            ("a.md", Some("a.md")),
            ("./a/./b.md", Some("a/b.md")),
            ("a/../b.md", Some("b.md")),
            ("a/..", Some("")),
            ("..", None),
            ("a/../../b", None),
            ("/etc", None),
        ] {
            assert_eq!(
                normalize(Path::new(input)),
                want.map(PathBuf::from),
                "{input}"
            );
        }
    }
}
