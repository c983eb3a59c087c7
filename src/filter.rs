//! Which paths gitlockd never commits, before git's own ignore rules are asked.
//!
//! Pure and cheap: it looks at the path's components only, so the watcher can
//! drop an event without touching the filesystem or the repository. Git's
//! ignore rules (.gitignore, info/exclude, core.excludesFile) are checked
//! separately through the repository, because only libgit2 knows them exactly.

use std::ffi::OsStr;
use std::path::{Component, Path};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// A pattern from the `ignore` config key that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("bad ignore pattern {pattern:?}: {source}")]
pub struct BadPattern {
    /// The pattern as written in the config.
    pub pattern: String,
    /// Why globset refused it.
    #[source]
    pub source: globset::Error,
}

/// Excludes `.git/` internals, editor temporaries and the user's extra globs.
#[derive(Debug, Clone)]
pub struct PathFilter {
    /// The `ignore` globs, matched against the notebook-relative path and the file name.
    globs: GlobSet,
    /// The globs as written, for display.
    patterns: Vec<String>,
}

impl Default for PathFilter {
    fn default() -> Self {
        PathFilter {
            globs: GlobSet::empty(),
            patterns: Vec::new(),
        }
    }
}

impl PathFilter {
    /// A filter with the built-in rules plus `extra` globs (gitignore-like:
    /// a glob without `/` matches a name at any depth).
    pub fn new(extra: &[String]) -> Result<PathFilter, BadPattern> {
        let mut builder = GlobSetBuilder::new();
        for pattern in extra {
            let trimmed = pattern.trim_start_matches('/').trim_end_matches('/');
            builder.add(compile(pattern, trimmed)?);
            // `dir/` or `dir` also excludes everything below it.
            builder.add(compile(pattern, &format!("{trimmed}/**"))?);
            if !trimmed.contains('/') {
                builder.add(compile(pattern, &format!("**/{trimmed}"))?);
                builder.add(compile(pattern, &format!("**/{trimmed}/**"))?);
            }
        }
        let globs = builder.build().map_err(|source| BadPattern {
            pattern: extra.join(", "),
            source,
        })?;
        Ok(PathFilter {
            globs,
            patterns: extra.to_vec(),
        })
    }

    /// The extra globs this filter was built from.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// True when `rel` (relative to the notebook root) must never be committed
    /// nor arm the debounce timer: anything under `.git`, an editor temporary,
    /// or a match of the user's globs.
    pub fn is_excluded(&self, rel: &Path) -> bool {
        if rel.as_os_str().is_empty() {
            return true;
        }
        for component in rel.components() {
            match component {
                Component::Normal(name) if name == ".git" => return true,
                Component::Normal(_) => {}
                // `..`, a root or a prefix: not a path inside the notebook.
                _ => return true,
            }
        }
        if rel.file_name().is_some_and(is_editor_temporary) {
            return true;
        }
        !self.patterns.is_empty() && self.globs.is_match(rel)
    }
}

fn compile(original: &str, glob: &str) -> Result<Glob, BadPattern> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .build()
        .map_err(|source| BadPattern {
            pattern: original.to_string(),
            source,
        })
}

/// Files editors create beside the real one while saving or editing: vim's
/// swap files and its `4913` write probe, backup files (`*~`), emacs lock
/// links and auto-saves, JetBrains safe-write files, and kate/gedit-style
/// hidden temporaries. Committing them would be noise, or worse, a commit of
/// a half-saved copy.
pub fn is_editor_temporary(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    name == "4913"
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swo")
        || name.ends_with(".swx")
        || name.ends_with(".swn")
        || name.starts_with(".#")
        || (name.len() > 1 && name.starts_with('#') && name.ends_with('#'))
        || name.ends_with("___jb_tmp___")
        || name.ends_with("___jb_old___")
        || name.starts_with(".goutputstream-")
        || (name.starts_with(".~lock.") && name.ends_with('#'))
        || name == ".DS_Store"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editor_temporaries_are_recognised() {
        for name in [
            "4913",
            "note.md~",
            ".note.md.swp",
            ".note.md.swo",
            ".note.md.swx",
            ".#note.md",
            "#note.md#",
            "note.md___jb_tmp___",
            ".goutputstream-ABC123",
            ".~lock.sheet.ods#",
        ] {
            assert!(is_editor_temporary(OsStr::new(name)), "{name}");
        }
        for name in ["note.md", "4914", "#", "swp", "a#b", "notes.swap"] {
            assert!(!is_editor_temporary(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn git_internals_and_escapes_are_excluded() {
        let f = PathFilter::default();
        for p in [".git", ".git/index", "sub/.git/HEAD", "../x", "/abs", ""] {
            assert!(f.is_excluded(Path::new(p)), "{p}");
        }
        for p in ["a.md", "sub/b.md", ".gitignore", ".github/x.yml"] {
            assert!(!f.is_excluded(Path::new(p)), "{p}");
        }
    }

    #[test]
    fn extra_globs_match_at_any_depth_and_below_directories() {
        let f = PathFilter::new(&["*.log".into(), "build/".into(), "docs/*.tmp".into()])
            .expect("valid globs");
        for p in [
            "x.log",
            "a/b/x.log",
            "build",
            "build/out.o",
            "a/build/o",
            "docs/a.tmp",
        ] {
            assert!(f.is_excluded(Path::new(p)), "{p}");
        }
        for p in ["x.md", "logs/x.md", "docs/sub/a.tmp2", "a/docs/a.md"] {
            assert!(!f.is_excluded(Path::new(p)), "{p}");
        }
    }

    #[test]
    fn bad_glob_is_reported_with_the_pattern() {
        let err = PathFilter::new(&["a[".into()]).expect_err("unclosed class");
        assert!(err.to_string().contains("a["), "{err}");
    }
}
