//! `restore` and `undo`: bring back an older version as a new commit.
//!
//! Both write the work tree on a user's explicit request, then commit what
//! they wrote through the ordinary commit path (`commit_now`), so history is
//! only ever added to. Files are written by the user's `git restore`, never
//! from raw blobs: smudge filters (git-lfs), `eol` attributes and sparse
//! checkout apply exactly as in a terminal.
//!
//! Nothing uncommitted is overwritten: `restore` first commits the path's
//! current state, and `undo` refuses when a file it would touch changed
//! after the commit being undone (committed or not).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use git2::{Commit, Oid, Repository, Sort, Tree};

use super::error::git_err;
use super::read::resolve_commit;
use super::{busy_state, AutoCommitOptions, AutoCommitOutcome, GitError, GitManager};
use crate::lock::LockMode;

/// What `restore` did.
#[derive(Debug, Clone)]
pub struct RestoreOutcome {
    /// The commit the path was taken from.
    pub source: Oid,
    /// The commit that saved the path's uncommitted state first, if any.
    pub saved: Option<Oid>,
    /// The commit of the restored version (`commit: None`: it was already so).
    pub outcome: AutoCommitOutcome,
}

/// What `undo` did.
#[derive(Debug, Clone)]
pub struct UndoOutcome {
    /// The commit whose changes were reverted.
    pub reverted: Oid,
    /// The new commit (`commit: None`: the commit changed nothing).
    pub outcome: AutoCommitOutcome,
}

/// Where `restore` takes a path from.
#[derive(Debug, Clone)]
pub enum RestoreSource {
    /// A revision, anything `git rev-parse` accepts.
    Rev(String),
    /// The newest first-parent commit of HEAD made at or before this Unix time.
    Before(i64),
}

impl GitManager {
    /// Writes `path` (a file or a folder) as it was at `source` and commits
    /// it. Its current state is committed first, so it stays in history. A
    /// folder is restored whole: files added to it since are removed (they
    /// stay in history too).
    pub fn restore(
        &self,
        path: &Path,
        source: &RestoreSource,
        opts: &AutoCommitOptions,
    ) -> Result<RestoreOutcome, GitError> {
        let _hold = self.hold(LockMode::Exclusive)?;
        let rel = self.resolve_path(path)?;
        let (source_id, short) = {
            let repo = self.open()?;
            refuse_if_busy(&repo)?;
            let commit = match source {
                RestoreSource::Rev(rev) => resolve_commit(&repo, rev)?,
                RestoreSource::Before(secs) => commit_before(&repo, *secs)?,
            };
            let tree = commit
                .tree()
                .map_err(git_err(&repo, "reading the source commit's tree"))?;
            if !rel.as_os_str().is_empty() && tree.get_path(&rel).is_err() {
                return Err(GitError::NotFound {
                    what: format!("{} in commit {}", rel.display(), short_id(commit.id())),
                });
            }
            (commit.id(), short_id(commit.id()))
        };
        self.git.check_usable()?;
        let shown = display_rel(&rel);
        let saved = self
            .commit_now(
                Some(&format!("gitlockd: save {shown} before restoring it")),
                Some(std::slice::from_ref(&rel)),
                opts,
            )?
            .commit;
        self.git.run_ok(
            &self.root,
            &[
                "restore",
                &format!("--source={source_id}"),
                "--worktree",
                "--pathspec-from-file=-",
                "--pathspec-file-nul",
            ],
            &[("GIT_LITERAL_PATHSPECS", "1")],
            Some(&pathspec_input(std::slice::from_ref(&rel))),
        )?;
        let outcome = self.commit_now(
            Some(&format!("gitlockd: restore {shown} as of {short}")),
            Some(std::slice::from_ref(&rel)),
            opts,
        )?;
        Ok(RestoreOutcome {
            source: source_id,
            saved,
            outcome,
        })
    }

    /// Reverts the changes of `rev` (default HEAD) as a new commit. Refused,
    /// with nothing written, when a file it touched changed after it (in a
    /// later commit, or not committed yet), or when it is a merge commit.
    pub fn undo(
        &self,
        rev: Option<&str>,
        opts: &AutoCommitOptions,
    ) -> Result<UndoOutcome, GitError> {
        let _hold = self.hold(LockMode::Exclusive)?;
        let rev = rev.unwrap_or("HEAD");
        let plan = {
            let repo = self.open()?;
            refuse_if_busy(&repo)?;
            let commit = resolve_commit(&repo, rev)?;
            plan_undo(&repo, &commit)?
        };
        if plan.restore.is_empty() && plan.remove.is_empty() {
            return Ok(UndoOutcome {
                reverted: plan.commit,
                outcome: AutoCommitOutcome::default(),
            });
        }
        self.git.check_usable()?;
        let all: Vec<PathBuf> = plan.restore.iter().chain(&plan.remove).cloned().collect();
        // Uncommitted changes (ignored files too: one may sit where the
        // commit deleted a file) would be overwritten: refuse.
        let out = self.git.run_ok(
            &self.root,
            &[
                "status",
                "--porcelain=v1",
                "-z",
                "--untracked-files=all",
                "--ignored=matching",
                "--",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain(all.iter().map(|p| p.display().to_string()))
            .collect::<Vec<_>>(),
            &[("GIT_LITERAL_PATHSPECS", "1"), ("GIT_OPTIONAL_LOCKS", "0")],
            None,
        )?;
        if let Some(entry) = out.stdout.split(|b| *b == 0).find(|e| e.len() > 3) {
            let path = String::from_utf8_lossy(&entry[3..]).into_owned();
            return Err(GitError::Refused {
                reason: format!(
                    "cannot undo {}: {path} has changes that are not committed yet; \
                     wait for the auto-commit (or `gitlockd commit`), then use \
                     `gitlockd restore` for that file",
                    short_id(plan.commit)
                ),
            });
        }
        if !plan.restore.is_empty() {
            self.git.run_ok(
                &self.root,
                &[
                    "restore",
                    &format!("--source={}", plan.parent_spec),
                    "--worktree",
                    "--pathspec-from-file=-",
                    "--pathspec-file-nul",
                ],
                &[("GIT_LITERAL_PATHSPECS", "1")],
                Some(&pathspec_input(&plan.restore)),
            )?;
        }
        for rel in &plan.remove {
            let full = self.root.join(rel);
            match std::fs::remove_file(&full) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(GitError::Io {
                        context: format!(
                            "removing {} (added by the undone commit)",
                            full.display()
                        ),
                        source,
                    })
                }
            }
        }
        let message = format!(
            "Revert \"{}\"\n\nThis reverts commit {}.",
            plan.summary, plan.commit
        );
        let outcome = self.commit_now(Some(&message), Some(&all), opts)?;
        Ok(UndoOutcome {
            reverted: plan.commit,
            outcome,
        })
    }
}

/// What undoing one commit writes.
struct UndoPlan {
    commit: Oid,
    summary: String,
    /// The parent, as `git restore --source` takes it.
    parent_spec: String,
    /// Paths to write back as the parent had them.
    restore: Vec<PathBuf>,
    /// Paths the commit added: removed.
    remove: Vec<PathBuf>,
}

/// Lists the paths `commit` changed and checks HEAD still has them as
/// `commit` left them.
fn plan_undo(repo: &Repository, commit: &Commit<'_>) -> Result<UndoPlan, GitError> {
    let short = short_id(commit.id());
    if commit.parent_count() > 1 {
        return Err(GitError::Refused {
            reason: format!(
                "cannot undo {short}: it is a merge commit; undo the commits it brought in one by one"
            ),
        });
    }
    let ctx = "listing the changes of the commit to undo";
    let parent = match commit.parent_count() {
        0 => None,
        _ => Some(commit.parent(0).map_err(git_err(repo, ctx))?),
    };
    let parent_tree = parent
        .as_ref()
        .map(Commit::tree)
        .transpose()
        .map_err(git_err(repo, ctx))?;
    let tree = commit.tree().map_err(git_err(repo, ctx))?;
    let diff = repo
        .diff_tree_to_tree(parent_tree.as_ref(), Some(&tree), None)
        .map_err(git_err(repo, ctx))?;
    let mut paths = BTreeSet::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            if let Some(p) = file.path() {
                paths.insert(p.to_path_buf());
            }
        }
    }
    let head_tree = match repo.head() {
        Ok(head) => Some(head.peel_to_tree().map_err(git_err(repo, "reading HEAD"))?),
        Err(_) => None,
    };
    let (mut restore, mut remove) = (Vec::new(), Vec::new());
    for path in paths {
        if entry_of(head_tree.as_ref(), &path) != entry_of(Some(&tree), &path) {
            return Err(GitError::Refused {
                reason: format!(
                    "cannot undo {short}: {} was changed by a later commit; \
                     use `gitlockd restore` to bring back the version you want",
                    path.display()
                ),
            });
        }
        match entry_of(parent_tree.as_ref(), &path) {
            Some((_, 0o160000)) => {
                return Err(GitError::Refused {
                    reason: format!(
                        "cannot undo {short}: it changes the submodule {}, which gitlockd does not write",
                        path.display()
                    ),
                })
            }
            Some(_) => restore.push(path),
            None => remove.push(path),
        }
    }
    Ok(UndoPlan {
        commit: commit.id(),
        summary: String::from_utf8_lossy(commit.summary_bytes().unwrap_or_default()).into_owned(),
        parent_spec: parent
            .map(|p| p.id().to_string())
            .unwrap_or_else(|| "HEAD".into()),
        restore,
        remove,
    })
}

/// The (id, mode) of `path` in `tree`, if present.
fn entry_of(tree: Option<&Tree<'_>>, path: &Path) -> Option<(Oid, i32)> {
    let entry = tree?.get_path(path).ok()?;
    Some((entry.id(), entry.filemode()))
}

/// The newest commit on HEAD's first-parent line made at or before `secs`.
fn commit_before(repo: &Repository, secs: i64) -> Result<Commit<'_>, GitError> {
    let ctx = "walking the history";
    let mut walk = repo.revwalk().map_err(git_err(repo, ctx))?;
    walk.simplify_first_parent().map_err(git_err(repo, ctx))?;
    walk.set_sorting(Sort::NONE).map_err(git_err(repo, ctx))?;
    if walk.push_head().is_err() {
        return Err(GitError::NotFound {
            what: "a commit (the notebook has no history yet)".into(),
        });
    }
    let mut oldest = i64::MAX;
    for id in walk {
        let id = id.map_err(git_err(repo, ctx))?;
        let commit = repo.find_commit(id).map_err(git_err(repo, ctx))?;
        if commit.time().seconds() <= secs {
            return Ok(commit);
        }
        oldest = oldest.min(commit.time().seconds());
    }
    let rfc = |t: i64| {
        crate::notebook::rfc3339(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64),
        )
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Err(GitError::BeforeHistory {
        at: rfc(secs),
        oldest: rfc(oldest),
        age: compact_age(now.saturating_sub(oldest)),
    })
}

/// `secs` floored to the units `--at` takes, written without spaces so it
/// can be pasted back: "3h12m", "45s", "0s".
fn compact_age(secs: i64) -> String {
    let secs = secs.max(0);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

fn refuse_if_busy(repo: &Repository) -> Result<(), GitError> {
    match busy_state(repo.state()) {
        Some(state) => Err(GitError::Busy {
            state: state.to_string(),
        }),
        None => Ok(()),
    }
}

/// NUL-separated pathspecs for `--pathspec-from-file=- --pathspec-file-nul`
/// (the empty path is the whole notebook).
fn pathspec_input(paths: &[PathBuf]) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str().is_empty() {
            out.push(b'.');
        } else {
            out.extend_from_slice(p.as_os_str().as_bytes());
        }
        out.push(0);
    }
    out
}

fn display_rel(rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        "the whole notebook".into()
    } else {
        rel.display().to_string()
    }
}

fn short_id(id: Oid) -> String {
    id.to_string()[..8].to_string()
}
