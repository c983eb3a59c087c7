//! Who gitlockd's commits are by, and how a notebook's repository is opened.
//!
//! One resolution of the identity serves every way a commit is made: a
//! libgit2 [`Signature`] for the commits gitlockd writes itself, and the
//! `GIT_AUTHOR_*` / `GIT_COMMITTER_*` variables for the ones `git` makes (a
//! commit with hooks or filters, a sync merge), so the two can never
//! disagree on who made a commit.

use std::ffi::OsStr;
use std::path::Path;

use git2::{Repository, RepositoryOpenFlags, Signature};

use super::GitError;

/// Opens the repository whose work tree (or git directory) is exactly
/// `path`: never searches upwards (a folder inside another repository is not
/// a notebook) and ignores `GIT_DIR`, so every part of gitlockd sees the
/// same repository for a notebook.
pub fn open(path: &Path) -> Result<Repository, git2::Error> {
    Repository::open_ext(
        path,
        RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&OsStr>(),
    )
}

/// The name and e-mail address a notebook's commits are made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The author's and committer's name.
    pub name: String,
    /// The author's and committer's e-mail address.
    pub email: String,
}

impl Identity {
    /// The configured `author_name` / `author_email`, else the repository's
    /// `user.name` / `user.email` (blank counts as unset), else
    /// `gitlockd <gitlockd@HOSTNAME>`: never fails, so a machine without a
    /// git identity still gets its changes committed.
    pub fn resolve(repo: &Repository, name: Option<&str>, email: Option<&str>) -> Identity {
        let config = repo.config().ok();
        let from_config = |key: &str| {
            config
                .as_ref()
                .and_then(|c| c.get_string(key).ok())
                .filter(|v| !v.trim().is_empty())
        };
        Identity {
            name: name
                .map(str::to_string)
                .or_else(|| from_config("user.name"))
                .unwrap_or_else(|| "gitlockd".to_string()),
            email: email
                .map(str::to_string)
                .or_else(|| from_config("user.email"))
                .unwrap_or_else(|| format!("gitlockd@{}", hostname())),
        }
    }

    /// A signature at the current time, for commits libgit2 writes.
    pub fn signature(&self) -> Result<Signature<'static>, GitError> {
        Signature::now(&self.name, &self.email).map_err(|source| GitError::Git {
            context: format!(
                "author {:?} <{}> is not a valid git identity: set author_name and \
                 author_email in the notebook's config",
                self.name, self.email
            ),
            source,
        })
    }

    /// The environment that makes a `git` subprocess commit as this identity.
    pub fn env(&self) -> [(&'static str, &str); 4] {
        [
            ("GIT_AUTHOR_NAME", self.name.as_str()),
            ("GIT_AUTHOR_EMAIL", self.email.as_str()),
            ("GIT_COMMITTER_NAME", self.name.as_str()),
            ("GIT_COMMITTER_EMAIL", self.email.as_str()),
        ]
    }
}

/// This machine's host name, `localhost` when it has none.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it on success (we also stop at the first NUL ourselves).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match String::from_utf8_lossy(&buf[..end]).trim() {
        "" => "localhost".to_string(),
        h => h.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn repo() -> (tempfile::TempDir, Repository) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        (dir, repo)
    }

    /// Sets a key in the repository's own config (it wins over the user's).
    fn set(repo: &Repository, key: &str, value: &str) {
        repo.config()
            .unwrap()
            .open_level(git2::ConfigLevel::Local)
            .unwrap()
            .set_str(key, value)
            .unwrap();
    }

    #[test]
    fn configured_author_wins_over_the_repository() {
        let (_dir, repo) = repo();
        set(&repo, "user.name", "Repo User");
        set(&repo, "user.email", "repo@x");
        let id = Identity::resolve(&repo, Some("Ann"), Some("ann@x"));
        assert_eq!(id.name, "Ann");
        assert_eq!(id.email, "ann@x");
        // Each field falls back on its own.
        let id = Identity::resolve(&repo, Some("Ann"), None);
        assert_eq!((id.name.as_str(), id.email.as_str()), ("Ann", "repo@x"));
    }

    #[test]
    fn blank_repository_identity_falls_back_to_gitlockd_at_host() {
        let (_dir, repo) = repo();
        // Blank in the repository's own config hides any user-level value.
        set(&repo, "user.name", " ");
        set(&repo, "user.email", "");
        let id = Identity::resolve(&repo, None, None);
        assert_eq!(id.name, "gitlockd");
        assert_eq!(id.email, format!("gitlockd@{}", hostname()));
        assert!(!hostname().is_empty());
    }

    #[test]
    fn signature_and_env_carry_the_same_identity() {
        let (_dir, repo) = repo();
        let id = Identity::resolve(&repo, Some("Ann"), Some("ann@x"));
        let sig = id.signature().unwrap();
        assert_eq!(sig.name().unwrap(), "Ann");
        assert_eq!(sig.email().unwrap(), "ann@x");
        assert_eq!(
            id.env(),
            [
                ("GIT_AUTHOR_NAME", "Ann"),
                ("GIT_AUTHOR_EMAIL", "ann@x"),
                ("GIT_COMMITTER_NAME", "Ann"),
                ("GIT_COMMITTER_EMAIL", "ann@x"),
            ]
        );
        // A name git refuses is an error naming the fix, not a panic.
        let bad = Identity::resolve(&repo, Some("<bad>"), Some("a@x"));
        let e = bad.signature().err().unwrap();
        assert!(e.to_string().contains("author_name"), "{e}");
    }

    #[test]
    fn open_never_searches_upwards() {
        let (dir, _repo) = repo();
        let inner = dir.path().join("sub");
        std::fs::create_dir(&inner).unwrap();
        assert_eq!(
            open(&inner).err().map(|e| e.code()),
            Some(git2::ErrorCode::NotFound)
        );
        assert!(open(dir.path()).is_ok());
    }
}
