//! Whether any ignore or attributes file can apply to a path at all, so the
//! stager can skip libgit2's per-file lookups when none does.
//!
//! libgit2 answers `is_path_ignored` and `get_attr` by resolving the path
//! (a `realpath`, i.e. one `readlink` per component) and re-checking every
//! parent folder's `.gitignore`/`.gitattributes` for freshness: ~50 system
//! calls per new file, most of a 2,000-file burst's cost. Here each folder
//! is looked at once per commit round, and a folder with no such file in it
//! or above it (and no repository-wide one) needs no lookup: the answer is
//! "not ignored" and "no attributes", exactly what libgit2 would say.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use git2::{Index, Repository};

/// Per-round cache of which folders have ignore or attributes files in them
/// or above them.
pub(super) struct Sources {
    root: PathBuf,
    /// A repository-wide ignore source with rules (info/exclude,
    /// core.excludesFile or its default).
    global_ignore: bool,
    /// A repository-wide attributes file (info/attributes,
    /// core.attributesFile or its default, the system one).
    global_attributes: bool,
    /// `core.autocrlf` is on: libgit2 converts text files without attributes.
    autocrlf: bool,
    /// `core.filemode` is off: libgit2 keeps the recorded executable bit.
    filemode_off: bool,
    /// `core.symlinks` is off: libgit2 keeps a tracked link a link when its
    /// file (a plain file holding the target) changes.
    symlinks_off: bool,
    /// Folder (notebook-relative, "" = root) → a `.gitignore` in it or above.
    ignore_dirs: HashMap<PathBuf, bool>,
    /// Folder → a `.gitattributes` (work tree or index) in it or above.
    attr_dirs: HashMap<PathBuf, bool>,
}

impl Sources {
    /// Look at the repository-wide sources (config and a few `stat`s).
    pub(super) fn new(repo: &Repository, root: &Path) -> Sources {
        let config = repo.config().and_then(|mut c| c.snapshot()).ok();
        let path = |key: &str| config.as_ref().and_then(|c| c.get_path(key).ok());
        let xdg = |name: &str| {
            std::env::var_os("XDG_CONFIG_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))
                .map(|d| d.join("git").join(name))
        };
        let common = repo.commondir();
        let excludes = path("core.excludesFile").or_else(|| xdg("ignore"));
        let global_ignore =
            has_rules(&common.join("info/exclude")) || excludes.is_some_and(|f| has_rules(&f));
        let attributes = path("core.attributesFile").or_else(|| xdg("attributes"));
        let global_attributes = common.join("info/attributes").exists()
            || attributes.is_some_and(|f| f.exists())
            // libgit2's system attributes file (its system folder is /etc).
            || Path::new("/etc/gitattributes").exists();
        let autocrlf = config
            .as_ref()
            .and_then(|c| c.get_str("core.autocrlf").ok().map(str::to_string))
            .is_some_and(|v| !v.eq_ignore_ascii_case("false"));
        let filemode_off = config
            .as_ref()
            .and_then(|c| c.get_bool("core.filemode").ok())
            .is_some_and(|on| !on);
        let symlinks_off = config
            .as_ref()
            .and_then(|c| c.get_bool("core.symlinks").ok())
            .is_some_and(|on| !on);
        Sources {
            root: root.to_path_buf(),
            global_ignore,
            global_attributes,
            autocrlf,
            filemode_off,
            symlinks_off,
            ignore_dirs: HashMap::new(),
            attr_dirs: HashMap::new(),
        }
    }

    /// `core.fileMode`: whether the executable bit of a file counts.
    pub(super) fn filemode(&self) -> bool {
        !self.filemode_off
    }

    /// False when no ignore rule can match `rel` (so it is not ignored).
    pub(super) fn may_be_ignored(&mut self, rel: &Path) -> bool {
        if self.global_ignore {
            return true;
        }
        let dir = rel.parent().unwrap_or(Path::new(""));
        self.ignore_file_at_or_above(dir)
    }

    /// False when no attributes file can apply to `rel` (no `filter`,
    /// `working-tree-encoding`, `text`, `eol` or `ident` attribute).
    pub(super) fn may_have_attributes(&mut self, rel: &Path, index: &Index) -> bool {
        if self.global_attributes {
            return true;
        }
        let dir = rel.parent().unwrap_or(Path::new(""));
        self.attributes_at_or_above(dir, index)
    }

    /// `core.fileMode` is on (the default): a change of a file's execute
    /// bit is a change to stage.
    pub(super) fn trusts_exec_bit(&self) -> bool {
        !self.filemode_off
    }

    /// `core.symlinks` is on (the default): links are links in the work tree.
    pub(super) fn has_symlinks(&self) -> bool {
        !self.symlinks_off
    }

    /// True when libgit2 would store `rel`'s bytes unchanged with the mode
    /// taken from the file: no attributes, no `core.autocrlf`, and
    /// `core.filemode` and `core.symlinks` on.
    pub(super) fn raw_blob(&mut self, rel: &Path, index: &Index) -> bool {
        !self.autocrlf
            && !self.filemode_off
            && !self.symlinks_off
            && !self.may_have_attributes(rel, index)
    }

    fn ignore_file_at_or_above(&mut self, dir: &Path) -> bool {
        if let Some(&known) = self.ignore_dirs.get(dir) {
            return known;
        }
        let here = self.root.join(dir).join(".gitignore").exists();
        let found = here
            || match dir.parent() {
                Some(parent) => self.ignore_file_at_or_above(parent),
                None => false,
            };
        self.ignore_dirs.insert(dir.to_path_buf(), found);
        found
    }

    fn attributes_at_or_above(&mut self, dir: &Path, index: &Index) -> bool {
        if let Some(&known) = self.attr_dirs.get(dir) {
            return known;
        }
        let file = dir.join(".gitattributes");
        // libgit2 reads the work tree's file, then the index's.
        let here = self.root.join(&file).exists() || index.get_path(&file, 0).is_some();
        let found = here
            || match dir.parent() {
                Some(parent) => self.attributes_at_or_above(parent, index),
                None => false,
            };
        self.attr_dirs.insert(dir.to_path_buf(), found);
        found
    }
}

/// True when an ignore file exists and holds a line that is not blank or a
/// comment. An unreadable one counts as having rules (libgit2 decides).
fn has_rules(path: &Path) -> bool {
    match std::fs::File::open(path) {
        Ok(file) => std::io::BufReader::new(file)
            .split(b'\n')
            .any(|line| line.map_or(true, |l| !l.trim_ascii().is_empty() && !l.starts_with(b"#"))),
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}
