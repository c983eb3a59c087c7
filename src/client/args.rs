//! How NOTEBOOK and PATH arguments go on the wire (names, absolute paths, UTF-8 only).

use std::path::{Component, Path, PathBuf};

use super::conn::ClientError;

/// How a NOTEBOOK argument goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotebookArg {
    /// Looks like a name: sent as-is; on `not_found`, retried once with `fallback` (the path it also names).
    Name {
        /// The name as typed.
        name: String,
        /// The canonical absolute path, when the argument also exists on disk.
        fallback: Option<String>,
    },
    /// A path, made absolute (symlinks resolved where it exists).
    Path(String),
}

impl NotebookArg {
    /// Classify a NOTEBOOK argument typed in directory `cwd`.
    pub fn classify(arg: &Path, cwd: &Path) -> Result<NotebookArg, ClientError> {
        let text = utf8(arg)?;
        let abs = cwd.join(arg);
        if is_name(text) {
            let fallback = std::fs::canonicalize(&abs)
                .ok()
                .and_then(|p| p.to_str().map(str::to_string));
            return Ok(NotebookArg::Name {
                name: text.to_string(),
                fallback,
            });
        }
        let path = std::fs::canonicalize(&abs).unwrap_or_else(|_| normalize(&abs));
        Ok(NotebookArg::Path(utf8(&path)?.to_string()))
    }

    /// What to send first.
    pub fn first(&self) -> &str {
        match self {
            NotebookArg::Name { name, .. } => name,
            NotebookArg::Path(path) => path,
        }
    }

    /// What to send after a `not_found`, if anything.
    pub fn retry(&self) -> Option<&str> {
        match self {
            NotebookArg::Name { fallback, .. } => fallback.as_deref(),
            NotebookArg::Path(_) => None,
        }
    }
}

/// True for a notebook name as the config allows it: `[A-Za-z0-9._-]+`, not `.` or `..`.
pub fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text != "."
        && text != ".."
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// How a PATH argument (commit/log/show/diff) goes on the wire.
///
/// Absolute paths, `./x`, `../x` and paths that exist relative to `cwd` are
/// sent absolute (the parent resolved, the last component kept so a symlink is
/// named, not followed); anything else is sent as typed, relative to the notebook.
pub fn path_arg(arg: &Path, cwd: &Path) -> Result<String, ClientError> {
    let explicit = arg.is_absolute()
        || matches!(
            arg.components().next(),
            Some(Component::CurDir | Component::ParentDir)
        );
    if !explicit && cwd.join(arg).symlink_metadata().is_err() {
        return Ok(utf8(arg)?.to_string());
    }
    let abs = normalize(&cwd.join(arg));
    let resolved = match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|p| p.join(name))
            .unwrap_or(abs),
        _ => std::fs::canonicalize(&abs).unwrap_or(abs),
    };
    Ok(utf8(&resolved)?.to_string())
}

/// The path as UTF-8, or a usage error (the protocol is JSON).
fn utf8(path: &Path) -> Result<&str, ClientError> {
    path.to_str().ok_or_else(|| {
        ClientError::Usage(format!(
            "{} is not valid UTF-8, which the control socket cannot carry",
            path.display()
        ))
    })
}

/// Resolve `.` and `..` in an absolute path lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut result = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                result.pop();
            }
            other => result.push(other.as_os_str()),
        }
    }
    result
}
