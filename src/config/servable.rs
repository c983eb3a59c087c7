//! Stage three: checks each notebook against the disk and against the other
//! notebooks' repositories, refusing what the daemon could not serve.
//!
//! Kept apart from [`super::resolve`] because it opens git repositories:
//! parsing stays about the text, this is about the world the text points at.
//! Every check here once let the daemon do harm or fail later: a notebook
//! whose `.git` file points at another notebook's git directory committed
//! that notebook's index ("delete a.txt") into its history.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use super::{Config, ConfigError};

/// Every notebook the daemon could not serve, one error each.
pub(super) fn check(config: &Config) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    // Canonical git directory -> the notebook that uses it first.
    let mut git_dirs: HashMap<PathBuf, String> = HashMap::new();
    for nb in &config.notebooks {
        let key = format!("notebook {:?}.path", nb.name);
        let mut fail = |message: String| {
            errors.push(ConfigError {
                key: key.clone(),
                line: None,
                message,
            })
        };
        let path = &nb.path;
        if path.parent().is_none() {
            fail(format!(
                "{} cannot be a notebook: choose a folder below it",
                path.display()
            ));
            continue;
        }
        if path
            .components()
            .any(|c| c == Component::Normal(".git".as_ref()))
        {
            fail(format!(
                "{} is inside a git directory (.git), which git manages itself: \
                 point path at the work tree that holds the .git folder",
                path.display()
            ));
            continue;
        }
        if !path.is_dir() {
            // Missing with init = true is created at start; other cases are
            // reported by the parser.
            continue;
        }
        match git_dir_of(path) {
            Ok(Some(git_dir)) => match git_dirs.get(&git_dir) {
                Some(first) => fail(format!(
                    "{} uses the git directory {} of notebook {first:?}: two notebooks \
                     sharing one repository would commit each other's changes as deletions. \
                     Give it its own repository (`git worktree add` makes a linked \
                     work tree with its own index) or remove one of the notebooks",
                    path.display(),
                    git_dir.display()
                )),
                None => {
                    git_dirs.insert(git_dir, nb.name.clone());
                }
            },
            Ok(None) if nb.init => {}
            Ok(None) => fail(format!(
                "{} is not a git repository: run `git init {}`, or set init = true \
                 to let gitlockd create it",
                path.display(),
                path.display()
            )),
            Err(Unservable(message)) => fail(message),
            // Broken or not readable now: a run-time problem, not the
            // config's. The daemon shows that notebook as "error" and
            // retries it, while the others run.
            Err(Unopenable) => {}
        }
    }
    errors
}

/// Why a folder's repository was not looked at.
enum Problem {
    /// Never servable as configured: a config error.
    Unservable(String),
    /// It could not be opened now (broken, permissions).
    Unopenable,
}
use Problem::{Unopenable, Unservable};

/// The canonical git directory of the work tree at exactly `path` (no
/// search upwards: a folder inside another repository is not one itself);
/// `None` when `path` is not the top of a work tree.
fn git_dir_of(path: &Path) -> Result<Option<PathBuf>, Problem> {
    let repo = match crate::git::open(path) {
        Ok(repo) => repo,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
        Err(_) => return Err(Unopenable),
    };
    let Some(workdir) = repo.workdir() else {
        return Err(Unservable(format!(
            "{} is a bare repository (no work tree to watch): point path at a clone \
             with a work tree",
            path.display()
        )));
    };
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same(workdir, path) {
        return Ok(None);
    }
    let git_dir = repo
        .path()
        .canonicalize()
        .unwrap_or_else(|_| repo.path().to_path_buf());
    Ok(Some(git_dir))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::fixture::Fixture;
    use super::*;

    fn init(fx: &Fixture, rel: &str) -> PathBuf {
        let dir = fx.mkdir(rel);
        git2::Repository::init(&dir).unwrap();
        dir
    }

    fn messages(fx: &Fixture, text: &str) -> Vec<String> {
        check(&fx.ok(text))
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn repositories_pass_and_a_plain_folder_needs_init() {
        let fx = Fixture::new();
        init(&fx, "a");
        fx.mkdir("plain");
        let text = r#"
[[notebook]]
name = "a"
path = "a"
[[notebook]]
name = "plain"
path = "plain"
[[notebook]]
name = "fresh"
path = "plain2"
init = true
"#;
        fx.mkdir("plain2");
        let errors = messages(&fx, text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("notebook \"plain\".path: "),
            "{errors:?}"
        );
        assert!(errors[0].contains("is not a git repository"), "{errors:?}");
        assert!(errors[0].contains("git init"), "{errors:?}");
        assert!(errors[0].contains("init = true"), "{errors:?}");
    }

    #[test]
    fn a_folder_inside_another_repository_is_not_one() {
        let fx = Fixture::new();
        init(&fx, "outer");
        fx.mkdir("outer/sub");
        let errors = messages(&fx, "[[notebook]]\nname = \"s\"\npath = \"outer/sub\"\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("is not a git repository"), "{errors:?}");
    }

    #[test]
    fn a_path_inside_dot_git_and_the_root_are_refused() {
        let fx = Fixture::new();
        init(&fx, "a");
        let errors = messages(
            &fx,
            "[[notebook]]\nname = \"g\"\npath = \"a/.git\"\n[[notebook]]\nname = \"r\"\npath = \"/\"\n",
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("inside a git directory"), "{errors:?}");
        assert!(errors[1].starts_with("notebook \"r\".path: / cannot be a notebook"));
    }

    #[test]
    fn two_notebooks_sharing_one_git_dir_are_refused() {
        let fx = Fixture::new();
        let a = init(&fx, "a");
        let b = fx.mkdir("b");
        // A `.git` file pointing at the other notebook's git directory.
        std::fs::write(
            b.join(".git"),
            format!("gitdir: {}\n", a.join(".git").display()),
        )
        .unwrap();
        let errors = messages(
            &fx,
            "[[notebook]]\nname = \"a\"\npath = \"a\"\n[[notebook]]\nname = \"b\"\npath = \"b\"\n",
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("notebook \"b\".path: "), "{errors:?}");
        assert!(errors[0].contains("of notebook \"a\""), "{errors:?}");
    }

    #[test]
    fn a_linked_worktree_has_its_own_git_dir_and_passes() {
        let fx = Fixture::new();
        let a = init(&fx, "a");
        let status = std::process::Command::new("git")
            .arg("-C")
            .arg(&a)
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q"])
            .args(["--allow-empty", "-m", "first"])
            .status()
            .unwrap();
        assert!(status.success());
        let wt = fx.root.join("wt");
        let status = std::process::Command::new("git")
            .arg("-C")
            .arg(&a)
            .args(["worktree", "add", "-q", "-b", "side"])
            .arg(&wt)
            .status()
            .unwrap();
        assert!(status.success());
        let errors = messages(
            &fx,
            "[[notebook]]\nname = \"a\"\npath = \"a\"\n[[notebook]]\nname = \"w\"\npath = \"wt\"\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
    }
}
