//! Changing the repository (staging, committing) and finding what to commit.
//!
//! Writes keep the on-disk index in step with the commit, so `git status` is
//! clean afterwards, and never touch the work tree or rewrite history.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use git2::{
    Commit, Delta, DiffFindOptions, ErrorCode, Index, Oid, Repository, Signature, Status,
    StatusOptions, Tree,
};

use super::error::git_err;
use super::message::{render_changes_message, ChangeKind, FileChange};
use super::stage::Stager;
use super::{
    busy_state, AutoCommitOptions, AutoCommitOutcome, GitError, GitManager,
    DEFAULT_MESSAGE_TEMPLATE,
};
use crate::filter::PathFilter;
use crate::lock::LockMode;

/// How often a commit is redone from the top when HEAD moved under it.
const MAX_ATTEMPTS: usize = 5;

/// Where a commit's message comes from.
enum MessageSpec<'a> {
    /// Exactly this text.
    Literal(&'a str),
    /// A template rendered with the commit's changes.
    Template {
        template: &'a str,
        notebook: &'a str,
    },
}

/// What one staging + commit pass produced.
struct Batch {
    /// The new commit, `None` when the tree did not change.
    id: Option<Oid>,
    /// What the commit changed (empty without a commit).
    changes: Vec<FileChange>,
    /// Files skipped for their size.
    skipped_large: Vec<(PathBuf, u64)>,
    /// Files that changed while being staged.
    recheck: Vec<PathBuf>,
}

/// Staging settings of one operation.
struct StageSettings<'a> {
    filter: &'a PathFilter,
    max_file_size: u64,
    author_name: Option<&'a str>,
    author_email: Option<&'a str>,
}

impl GitManager {
    /// Stage `rel` (relative to the root, or absolute inside it): a file is
    /// added, a path that no longer exists is staged as a deletion, a
    /// directory is staged recursively. Ignored untracked paths, editor
    /// temporaries and files over the size limit are left out silently.
    pub fn add_file(&self, rel: &Path) -> Result<(), GitError> {
        let _hold = self.hold(LockMode::Exclusive)?;
        let rel = self.resolve_path(rel)?;
        let repo = self.open()?;
        let (mut index, index_mtime) = writable_index(&repo)?;
        let mut stager = Stager::new(
            &repo,
            &self.root,
            &self.filter,
            self.max_file_size,
            index_mtime,
        );
        stager.stage(&mut index, &rel)?;
        write_index(&repo, &mut index)
    }

    /// Make one commit on the current branch: of `paths` (staged first), or,
    /// without paths, of every pending change (`git add -A`, honouring ignore
    /// rules, the filter and the size limit). `None` when the tree would equal
    /// the parent's (no empty commits). An empty `message` is generated.
    pub fn commit(
        &self,
        message: &str,
        paths: Option<&[PathBuf]>,
    ) -> Result<Option<Oid>, GitError> {
        let _hold = self.hold(LockMode::Exclusive)?;
        let rels = match paths {
            Some(paths) => paths
                .iter()
                .map(|p| self.resolve_path(p))
                .collect::<Result<Vec<_>, _>>()?,
            None => vec![PathBuf::new()],
        };
        let notebook = self.notebook_name();
        let spec = if message.trim().is_empty() {
            MessageSpec::Template {
                template: DEFAULT_MESSAGE_TEMPLATE,
                notebook: &notebook,
            }
        } else {
            MessageSpec::Literal(message)
        };
        let settings = StageSettings {
            filter: &self.filter,
            max_file_size: self.max_file_size,
            author_name: self.author_name.as_deref(),
            author_email: self.author_email.as_deref(),
        };
        Ok(self.stage_and_commit(&rels, &settings, &spec)?.id)
    }

    /// Commit exactly `paths` (changed, created, deleted or renamed; absolute
    /// or notebook-relative) in one commit, staging nothing else: the cost is
    /// one index read and write plus the changed files. Paths outside the
    /// notebook or inside `.git` are skipped.
    pub fn auto_commit_on_change(
        &self,
        paths: &[PathBuf],
        opts: &AutoCommitOptions,
    ) -> Result<AutoCommitOutcome, GitError> {
        let _hold = self.hold(LockMode::Exclusive)?;
        let mut rels = BTreeSet::new();
        for p in paths {
            match self.resolve_path(p) {
                Ok(rel) if !rel.as_os_str().is_empty() && opts.filter.is_excluded(&rel) => {}
                Ok(rel) => {
                    rels.insert(rel);
                }
                Err(GitError::Forbidden { path, reason }) => {
                    tracing::debug!(path = %path.display(), %reason, "not auto-committing");
                }
                Err(e) => return Err(e),
            }
        }
        if rels.is_empty() {
            return Ok(AutoCommitOutcome::default());
        }
        let rels: Vec<PathBuf> = rels.into_iter().collect();
        let settings = StageSettings {
            filter: &opts.filter,
            max_file_size: opts.max_file_size,
            author_name: opts.author_name.as_deref().or(self.author_name.as_deref()),
            author_email: opts
                .author_email
                .as_deref()
                .or(self.author_email.as_deref()),
        };
        let spec = MessageSpec::Template {
            template: &opts.message,
            notebook: &opts.notebook,
        };
        let batch = self.stage_and_commit(&rels, &settings, &spec)?;
        Ok(AutoCommitOutcome {
            commit: batch.id,
            paths: batch
                .changes
                .iter()
                .flat_map(|c| c.paths().map(Path::to_path_buf))
                .collect(),
            skipped_large: batch.skipped_large,
            recheck: batch.recheck,
        })
    }

    /// Every path whose work-tree state differs from HEAD or the index (new,
    /// modified, deleted, both sides of a rename), honouring git's ignore
    /// rules and `opts.filter`: what to commit after a restart or a lost
    /// event. Reads only; the index file is not rewritten.
    pub fn pending_changes(&self, opts: &AutoCommitOptions) -> Result<Vec<PathBuf>, GitError> {
        let _hold = self.hold(LockMode::Shared)?;
        let repo = self.open()?;
        let mut so = StatusOptions::new();
        so.include_untracked(true)
            .recurse_untracked_dirs(true)
            .include_ignored(false)
            .include_unmodified(false)
            .exclude_submodules(true)
            .update_index(false);
        let statuses = repo
            .statuses(Some(&mut so))
            .map_err(git_err(&repo, "listing changed files"))?;
        let mut out = BTreeSet::new();
        for entry in statuses.iter() {
            let status = entry.status();
            if status.is_empty() || status.contains(Status::IGNORED) {
                continue;
            }
            let bytes = entry.path_bytes();
            // A directory entry is a nested repository: never staged.
            if bytes.ends_with(b"/") {
                continue;
            }
            let path = PathBuf::from(std::ffi::OsStr::from_bytes(bytes));
            if !opts.filter.is_excluded(&path) {
                out.insert(path);
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Stage `rels` and commit, redone from the top (bounded) when HEAD moved
    /// meanwhile, so another process's commit is never reverted by ours.
    fn stage_and_commit(
        &self,
        rels: &[PathBuf],
        settings: &StageSettings<'_>,
        message: &MessageSpec<'_>,
    ) -> Result<Batch, GitError> {
        // Nested in the caller's hold: re-entered by owner, never queued.
        let _hold = self.hold(LockMode::Exclusive)?;
        let mut attempt = 1;
        loop {
            let repo = self.open()?;
            let (mut index, index_mtime) = writable_index(&repo)?;
            let mut stager = Stager::new(
                &repo,
                &self.root,
                settings.filter,
                settings.max_file_size,
                index_mtime,
            );
            for rel in rels {
                stager.stage(&mut index, rel)?;
            }
            write_index(&repo, &mut index)?;
            match commit_index(&repo, &mut index, message, settings) {
                Err(e) if e.is_stale_parent() && attempt < MAX_ATTEMPTS => {
                    tracing::debug!(root = %self.root.display(), attempt, "HEAD moved while committing; again");
                    attempt += 1;
                }
                Err(e) => return Err(e),
                Ok((id, changes)) => {
                    if let Some(id) = id {
                        tracing::debug!(root = %self.root.display(), commit = %id, files = changes.len(), "committed");
                    }
                    return Ok(Batch {
                        id,
                        changes,
                        skipped_large: stager.skipped_large,
                        recheck: stager.recheck,
                    });
                }
            }
        }
    }

    /// The notebook's folder name, for generated messages.
    fn notebook_name(&self) -> String {
        self.root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// The index, fresh from disk, when committing is allowed now: no operation
/// in progress, no conflicts, no foreign `index.lock`. Checked before anything
/// is written.
pub(crate) fn writable_index(repo: &Repository) -> Result<(Index, Option<(i64, i64)>), GitError> {
    if let Some(state) = busy_state(repo.state()) {
        return Err(GitError::Busy {
            state: state.to_string(),
        });
    }
    let lock = repo.path().join("index.lock");
    if lock.exists() {
        return Err(GitError::IndexLocked { path: lock });
    }
    // Taken before loading: the conservative side for the racy-clean check.
    let index_mtime = std::fs::metadata(repo.path().join("index"))
        .ok()
        .map(|m| (m.mtime(), m.mtime_nsec()));
    let mut index = repo.index().map_err(git_err(repo, "reading the index"))?;
    // libgit2 caches the index: reload it if someone else wrote it meanwhile.
    index
        .read(false)
        .map_err(git_err(repo, "reading the index"))?;
    if index.has_conflicts() {
        return Err(GitError::Busy {
            state: "conflicts".to_string(),
        });
    }
    Ok((index, index_mtime))
}

fn write_index(repo: &Repository, index: &mut Index) -> Result<(), GitError> {
    index.write().map_err(git_err(repo, "writing the index"))
}

/// Commit the index on HEAD unless its tree equals the parent's.
fn commit_index(
    repo: &Repository,
    index: &mut Index,
    message: &MessageSpec<'_>,
    settings: &StageSettings<'_>,
) -> Result<(Option<Oid>, Vec<FileChange>), GitError> {
    let tree_id = index
        .write_tree()
        .map_err(git_err(repo, "writing the tree"))?;
    let parent = head_commit(repo)?;
    let parent_tree = parent
        .as_ref()
        .map(Commit::tree)
        .transpose()
        .map_err(git_err(repo, "reading HEAD's tree"))?;
    if parent_tree.as_ref().map(Tree::id) == Some(tree_id) {
        return Ok((None, Vec::new()));
    }
    let tree = repo
        .find_tree(tree_id)
        .map_err(git_err(repo, "reading the new tree"))?;
    if parent.is_none() && tree.is_empty() {
        return Ok((None, Vec::new()));
    }
    let changes = tree_changes(repo, parent_tree.as_ref(), &tree)?;
    let text = match message {
        MessageSpec::Literal(text) => (*text).to_string(),
        MessageSpec::Template { template, notebook } => {
            render_changes_message(template, notebook, &changes)
        }
    };
    let sig = signature(repo, settings.author_name, settings.author_email)?;
    let parents: Vec<&Commit<'_>> = parent.iter().collect();
    let id = repo
        .commit(Some("HEAD"), &sig, &sig, &text, &tree, &parents)
        .map_err(git_err(repo, "committing"))?;
    Ok((Some(id), changes))
}

/// The commit HEAD points to; `None` on an unborn branch.
pub(crate) fn head_commit(repo: &Repository) -> Result<Option<Commit<'_>>, GitError> {
    match repo.head() {
        Ok(head) => head
            .peel_to_commit()
            .map(Some)
            .map_err(git_err(repo, "reading HEAD")),
        Err(e) if e.code() == ErrorCode::UnbornBranch => Ok(None),
        Err(e) => Err(git_err(repo, "reading HEAD")(e)),
    }
}

/// What changed from `old` to `new`, renames detected. Cheap: unchanged
/// subtrees have equal ids and are not descended into.
fn tree_changes(
    repo: &Repository,
    old: Option<&Tree<'_>>,
    new: &Tree<'_>,
) -> Result<Vec<FileChange>, GitError> {
    let mut diff = repo
        .diff_tree_to_tree(old, Some(new), None)
        .map_err(git_err(repo, "listing the commit's changes"))?;
    diff.find_similar(Some(DiffFindOptions::new().renames(true)))
        .map_err(git_err(repo, "detecting renames"))?;
    let path_of = |f: git2::DiffFile<'_>| f.path().map(Path::to_path_buf).unwrap_or_default();
    Ok(diff
        .deltas()
        .filter_map(|d| {
            let kind = match d.status() {
                Delta::Added | Delta::Copied => ChangeKind::Added,
                Delta::Deleted => {
                    return Some(FileChange {
                        path: path_of(d.old_file()),
                        kind: ChangeKind::Deleted,
                    })
                }
                Delta::Renamed => ChangeKind::Renamed {
                    from: path_of(d.old_file()),
                },
                Delta::Modified | Delta::Typechange => ChangeKind::Modified,
                _ => return None,
            };
            Some(FileChange {
                path: path_of(d.new_file()),
                kind,
            })
        })
        .collect())
}

/// The configured author, else the repository's `user.name` / `user.email`,
/// else `gitlockd <gitlockd@HOSTNAME>`.
fn signature(
    repo: &Repository,
    name: Option<&str>,
    email: Option<&str>,
) -> Result<Signature<'static>, GitError> {
    let config = repo.config().ok();
    let from_config = |key: &str| {
        config
            .as_ref()
            .and_then(|c| c.get_string(key).ok())
            .filter(|v| !v.trim().is_empty())
    };
    let name = name
        .map(str::to_string)
        .or_else(|| from_config("user.name"))
        .unwrap_or_else(|| "gitlockd".to_string());
    let email = email
        .map(str::to_string)
        .or_else(|| from_config("user.email"))
        .unwrap_or_else(|| format!("gitlockd@{}", hostname()));
    Signature::now(&name, &email).map_err(|source| GitError::Git {
        context: format!("author {name:?} <{email}> is not a valid git identity"),
        source,
    })
}

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
