//! The running notebooks, found by name or by any path inside them.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::notebook::Notebook;

/// The daemon's notebooks in config order; swapped in place by reloads.
#[derive(Default)]
pub struct Registry {
    notebooks: RwLock<Vec<Arc<Notebook>>>,
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
