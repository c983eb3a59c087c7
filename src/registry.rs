//! The running notebooks, found by name or by any path inside them, and
//! the configured ones that could not start (shown in status, retried).

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;

use crate::config::NotebookConfig;
use crate::notebook::{rfc3339, Notebook};
use crate::status::NotebookStatus;

/// The daemon's notebooks in config order; swapped in place by reloads.
#[derive(Default)]
pub struct Registry {
    notebooks: RwLock<Vec<Arc<Notebook>>>,
    failed: RwLock<Vec<FailedNotebook>>,
}

/// A configured notebook that could not start; the daemon retries it.
#[derive(Debug, Clone)]
pub struct FailedNotebook {
    /// Its configuration.
    pub config: NotebookConfig,
    /// Why it could not start, with the fix when known.
    pub error: String,
    /// When the daemon tries again.
    pub next_try: SystemTime,
    /// How many tries failed so far (the backoff grows with it).
    pub attempts: u32,
}

impl FailedNotebook {
    /// Its `status` entry (see [`NotebookStatus::failed`]).
    pub fn status(&self) -> NotebookStatus {
        NotebookStatus::failed(
            self.config.name.clone(),
            self.config.path.display().to_string(),
            self.error.clone(),
            rfc3339(self.next_try),
        )
    }
}

impl Registry {
    /// All notebooks, in config order.
    pub fn list(&self) -> Vec<Arc<Notebook>> {
        self.notebooks.read().clone()
    }

    /// The names, in config order.
    pub fn names(&self) -> Vec<String> {
        self.notebooks
            .read()
            .iter()
            .map(|n| n.name().to_string())
            .collect()
    }

    /// Replaces the whole set (reload).
    pub fn replace(&self, notebooks: Vec<Arc<Notebook>>) {
        *self.notebooks.write() = notebooks;
    }

    /// The notebooks that could not start, in config order.
    pub fn failed(&self) -> Vec<FailedNotebook> {
        self.failed.read().clone()
    }

    /// Replaces the set of notebooks that could not start.
    pub fn set_failed(&self, failed: Vec<FailedNotebook>) {
        *self.failed.write() = failed;
    }

    /// The notebook named `arg` (or holding the absolute path `arg`) that
    /// could not start, if it is one. A running notebook nested inside it
    /// wins for its own paths.
    pub fn find_failed(&self, arg: &str) -> Option<FailedNotebook> {
        let failed = self.failed.read();
        if let Some(f) = failed.iter().find(|f| f.config.name == arg) {
            return Some(f.clone());
        }
        let path = Path::new(arg);
        if !path.is_absolute() {
            return None;
        }
        let real = path.canonicalize().unwrap_or_else(|_| normalize(path));
        let hit = failed
            .iter()
            .filter(|f| real.starts_with(&f.config.path))
            .max_by_key(|f| f.config.path.components().count())?;
        let running_deeper = self
            .notebooks
            .read()
            .iter()
            .any(|n| real.starts_with(n.root()) && n.root().starts_with(&hit.config.path));
        (!running_deeper).then(|| hit.clone())
    }

    /// Every `status` entry of a notebook that could not start.
    pub fn failed_status(&self) -> Vec<NotebookStatus> {
        self.failed
            .read()
            .iter()
            .map(FailedNotebook::status)
            .collect()
    }

    /// The notebook named `arg`, or the one containing the absolute path `arg`.
    pub fn find(&self, arg: &str) -> Option<Arc<Notebook>> {
        let notebooks = self.notebooks.read();
        if let Some(nb) = notebooks.iter().find(|n| n.name() == arg) {
            return Some(nb.clone());
        }
        let path = Path::new(arg);
        if !path.is_absolute() {
            return None;
        }
        let real = path.canonicalize().unwrap_or_else(|_| normalize(path));
        // The deepest root wins: a notebook nested inside another's folder.
        notebooks
            .iter()
            .filter(|n| real.starts_with(n.root()))
            .max_by_key(|n| n.root().components().count())
            .cloned()
    }
}

/// `a/./b/../c` → `a/c` without touching the filesystem.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
