//! Changing the repository (staging, committing) and finding what to commit.
//!
//! Writes keep the on-disk index in step with the commit, so `git status` is
//! clean afterwards, and never touch the work tree or rewrite history.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use git2::{
    Commit, Delta, Diff, DiffFindOptions, DiffOptions, ErrorCode, Index, Oid, Repository,
    Signature, Tree,
};

use super::error::git_err;
use super::features::{self, GitFeature};
use super::index::{
    has_skip_worktree, is_unreadable_index, keep_index, writable_index, write_index, Attempt,
};
use super::message::{render_changes_message, ChangeKind, FileChange};
use super::stage::Stager;
use super::tree::commit_tree;
use super::{AutoCommitOptions, AutoCommitOutcome, GitError, GitManager, DEFAULT_MESSAGE_TEMPLATE};
use crate::filter::PathFilter;
use crate::lock::LockMode;

/// How often a commit is redone from the top when HEAD moved under it.
const MAX_ATTEMPTS: u32 = 10;

/// Where a commit's message comes from.
pub(super) enum MessageSpec<'a> {
    /// Exactly this text.
    Literal(&'a str),
    /// A template rendered with the commit's changes.
    Template {
        template: &'a str,
        notebook: &'a str,
    },
}

/// What one staging + commit pass produced.
pub(super) struct Batch {
    /// The new commit, `None` when the tree did not change.
    pub(super) id: Option<Oid>,
    /// What the commit changed (empty without a commit).
    pub(super) changes: Vec<FileChange>,
    /// Files skipped for their size.
    pub(super) skipped_large: Vec<(PathBuf, u64)>,
    /// Files that changed while being staged.
    pub(super) recheck: Vec<PathBuf>,
    /// Files left out because git could not stage them (a failing filter).
    pub(super) failed: Vec<(PathBuf, String)>,
    /// Files and folders that could not be read.
    pub(super) unreadable: Vec<(PathBuf, String)>,
}

/// Where a libgit2 pass ended.
enum Route {
    /// Committed (or nothing to commit).
    Done(Batch),
    /// Nothing written: the repository needs `git` for this batch.
    Git(Vec<GitFeature>),
}

impl Batch {
    fn into_outcome(self) -> AutoCommitOutcome {
        AutoCommitOutcome {
            commit: self.id,
            paths: self
                .changes
                .iter()
                .flat_map(|c| c.paths().map(Path::to_path_buf))
                .collect(),
            skipped_large: self.skipped_large,
            recheck: self.recheck,
            git_features: Vec::new(),
            failed: self.failed,
            unreadable: self.unreadable,
        }
    }
}

/// Staging settings of one operation.
pub(super) struct StageSettings<'a> {
    pub(super) filter: &'a PathFilter,
    pub(super) max_file_size: u64,
    pub(super) author_name: Option<&'a str>,
    pub(super) author_email: Option<&'a str>,
    /// Run the repository's commit hooks.
    pub(super) hooks: bool,
    /// The batch is past `max_delay`: a file changing while it is staged is
    /// committed as read (see [`Stager::take_as_read`]).
    pub(super) as_read: bool,
}

impl GitManager {
    /// Stage `rel` (relative to the root, or absolute inside it): a file is
    /// added, a path that no longer exists is staged as a deletion, a
    /// directory is staged recursively. Ignored untracked paths, editor
    /// temporaries and files over the size limit are left out silently.
    pub fn add_file(&self, rel: &Path) -> Result<(), GitError> {
        let _hold = self.hold(LockMode::Exclusive)?;
        let rel = self.resolve_path(rel)?;
        self.with_retries(|| {
            let repo = self.open()?;
            let mut loaded = writable_index(&repo, &self.index_cache)?;
            let mut stager = Stager::new(
                &repo,
                &self.root,
                &self.filter,
                self.max_file_size,
                loaded.stamp.mtime(),
            );
            stager.stage(&mut loaded.index, &rel)?;
            let written = write_index(&repo, &mut loaded)?;
            if let Attempt::Done(()) = written {
                keep_index(&self.index_cache, loaded);
            }
            Ok(written)
        })
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
        let rels = self.resolve_scope(paths)?;
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
            hooks: self.hooks,
            as_read: false,
        };
        Ok(self.stage_and_commit(&rels, &settings, &spec)?.commit)
    }

    /// A commit asked for by a user (`gitlockd commit`): of `paths` (staged
    /// first; notebook-relative), or without paths of every pending change,
    /// with the notebook's settings (filter, size limit, author). `message`
    /// replaces the subject template when given and not blank. Reports what
    /// the commit holds, like an auto-commit.
    pub fn commit_now(
        &self,
        message: Option<&str>,
        paths: Option<&[PathBuf]>,
        opts: &AutoCommitOptions,
    ) -> Result<AutoCommitOutcome, GitError> {
        let _hold = self.hold(LockMode::Exclusive)?;
        let rels = self.resolve_scope(paths)?;
        let spec = match message {
            Some(text) if !text.trim().is_empty() => MessageSpec::Literal(text),
            _ => MessageSpec::Template {
                template: &opts.message,
                notebook: &opts.notebook,
            },
        };
        let settings = self.settings_for(opts);
        self.stage_and_commit(&rels, &settings, &spec)
    }

    /// Commit exactly `paths` (changed, created, deleted or renamed; absolute
    /// or notebook-relative) in one commit, staging nothing else: the cost is
    /// one index read and write plus the changed files. Paths outside the
    /// notebook or inside `.git` are skipped. A file that changes while it
    /// is staged is left out and reported in `recheck`.
    pub fn auto_commit_on_change(
        &self,
        paths: &[PathBuf],
        opts: &AutoCommitOptions,
    ) -> Result<AutoCommitOutcome, GitError> {
        self.auto_commit(paths, opts, false)
    }

    /// [`GitManager::auto_commit_on_change`] for a batch already past
    /// `max_delay`: a file that changes while it is staged is committed as
    /// it was read, not left for a recheck. A file rewritten every few
    /// milliseconds changes during every read; rechecking it round after
    /// round would postpone its commit without bound. What was read is a
    /// state the file had, and its later changes make the next commit.
    pub fn auto_commit_overdue(
        &self,
        paths: &[PathBuf],
        opts: &AutoCommitOptions,
    ) -> Result<AutoCommitOutcome, GitError> {
        self.auto_commit(paths, opts, true)
    }

    /// The two above: `as_read` as in [`StageSettings::as_read`].
    fn auto_commit(
        &self,
        paths: &[PathBuf],
        opts: &AutoCommitOptions,
        as_read: bool,
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
            as_read,
            ..self.settings_for(opts)
        };
        let spec = MessageSpec::Template {
            template: &opts.message,
            notebook: &opts.notebook,
        };
        self.stage_and_commit(&rels, &settings, &spec)
    }

    /// The notebook-relative paths of a commit of `paths`; without paths,
    /// the empty path (the whole tree).
    fn resolve_scope(&self, paths: Option<&[PathBuf]>) -> Result<Vec<PathBuf>, GitError> {
        match paths {
            Some(paths) => paths.iter().map(|p| self.resolve_path(p)).collect(),
            None => Ok(vec![PathBuf::new()]),
        }
    }

    /// Staging settings from a notebook's options (author falling back to
    /// the manager's own).
    fn settings_for<'a>(&'a self, opts: &'a AutoCommitOptions) -> StageSettings<'a> {
        StageSettings {
            filter: &opts.filter,
            max_file_size: opts.max_file_size,
            author_name: opts.author_name.as_deref().or(self.author_name.as_deref()),
            author_email: opts
                .author_email
                .as_deref()
                .or(self.author_email.as_deref()),
            hooks: opts.hooks,
            as_read: false,
        }
    }

    /// Stage `rels` and commit, redone from the top (bounded) when HEAD moved
    /// meanwhile, so another process's commit is never reverted by ours.
    /// Through libgit2 when it honours everything the repository asks for,
    /// else through `git` (see `via_git`).
    fn stage_and_commit(
        &self,
        rels: &[PathBuf],
        settings: &StageSettings<'_>,
        message: &MessageSpec<'_>,
    ) -> Result<AutoCommitOutcome, GitError> {
        // Nested in the caller's hold: re-entered by owner, never queued.
        let _hold = self.hold(LockMode::Exclusive)?;
        let features = features::detect(&self.open()?, settings.hooks);
        let features = if features.is_empty() {
            match self.stage_and_commit_libgit2(rels, settings, message)? {
                Route::Done(batch) => return Ok(batch.into_outcome()),
                Route::Git(features) => features,
            }
        } else {
            features
        };
        let names: Vec<String> = features.iter().map(ToString::to_string).collect();
        tracing::debug!(root = %self.root.display(), why = ?names, "committing through git");
        let batch = self.commit_via_git(rels, settings, message, &features)?;
        let mut outcome = batch.into_outcome();
        outcome.git_features = names;
        Ok(outcome)
    }

    /// The libgit2 path; hands over to `git` (having written nothing) when
    /// the index or a file being staged needs it.
    fn stage_and_commit_libgit2(
        &self,
        rels: &[PathBuf],
        settings: &StageSettings<'_>,
        message: &MessageSpec<'_>,
    ) -> Result<Route, GitError> {
        // The empty path is the whole tree: then everything staged goes in.
        let scope = (!rels.iter().any(|r| r.as_os_str().is_empty())).then_some(rels);
        self.with_retries(|| {
            let repo = self.open()?;
            // HEAD before the index: if it moves before we commit, libgit2
            // refuses the commit (stale parent) and we start again.
            let parent = head_commit(&repo)?;
            let mut loaded = match writable_index(&repo, &self.index_cache) {
                Ok(loaded) => loaded,
                Err(GitError::Git { source, .. }) if is_unreadable_index(&source) => {
                    return Ok(Attempt::Done(Route::Git(vec![GitFeature::SplitIndex])));
                }
                Err(e) => return Err(e),
            };
            if has_skip_worktree(&loaded.index) {
                return Ok(Attempt::Done(Route::Git(vec![GitFeature::SkipWorktree])));
            }
            let mut stager = Stager::new(
                &repo,
                &self.root,
                settings.filter,
                settings.max_file_size,
                loaded.stamp.mtime(),
            );
            stager.take_as_read(settings.as_read);
            for rel in rels {
                stager.stage(&mut loaded.index, rel)?;
                if let Some(feature) = stager.needs_git.take() {
                    // Nothing written yet: the in-memory index is dropped.
                    return Ok(Attempt::Done(Route::Git(vec![feature])));
                }
            }
            if let Attempt::Again(lock) = write_index(&repo, &mut loaded)? {
                return Ok(Attempt::Again(lock));
            }
            let (id, changes) =
                commit_index(&repo, &mut loaded.index, parent, scope, message, settings)?;
            keep_index(&self.index_cache, loaded);
            if let Some(id) = id {
                tracing::debug!(root = %self.root.display(), commit = %id, files = changes.len(), "committed");
            }
            Ok(Attempt::Done(Route::Done(Batch {
                id,
                changes,
                skipped_large: stager.skipped_large,
                recheck: stager.recheck,
                failed: Vec::new(),
                unreadable: stager.unreadable,
            })))
        })
    }

    /// Run `f` until it is done, again (bounded, with a short backoff) while
    /// another process moves HEAD or rewrites the index under it.
    fn with_retries<T>(
        &self,
        mut f: impl FnMut() -> Result<Attempt<T>, GitError>,
    ) -> Result<T, GitError> {
        let mut attempt: u32 = 1;
        loop {
            let why = match f() {
                Ok(Attempt::Done(t)) => return Ok(t),
                // Someone keeps writing the index: report it like a held lock.
                Ok(Attempt::Again(lock)) if attempt >= MAX_ATTEMPTS => {
                    return Err(GitError::IndexLocked { path: lock });
                }
                Ok(Attempt::Again(_)) => "the index was rewritten",
                Err(e) if e.is_stale_parent() && attempt < MAX_ATTEMPTS => "HEAD moved",
                Err(e) => return Err(e),
            };
            tracing::debug!(root = %self.root.display(), attempt, why, "another git process interfered; again");
            std::thread::sleep(Duration::from_millis(u64::from(attempt.min(10)) * 2));
            attempt += 1;
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

/// Commit on HEAD (expected to be `parent`) the index's state of the paths
/// in `scope` (`None`: of everything), unless the tree equals the parent's.
///
/// Paths outside the scope keep the parent's version even when the index
/// differs there: a user's own `git add` stays staged for their own commit,
/// and an index that another process left behind HEAD (git's `commit` reads
/// the index before locking it) can never make us revert a committed file.
fn commit_index(
    repo: &Repository,
    index: &mut Index,
    parent: Option<Commit<'_>>,
    scope: Option<&[PathBuf]>,
    message: &MessageSpec<'_>,
    settings: &StageSettings<'_>,
) -> Result<(Option<Oid>, Vec<FileChange>), GitError> {
    let parent_tree = parent
        .as_ref()
        .map(Commit::tree)
        .transpose()
        .map_err(git_err(repo, "reading HEAD's tree"))?;
    let tree_id = commit_tree(repo, index, parent_tree.as_ref(), scope)?;
    if parent_tree.as_ref().map(Tree::id) == Some(tree_id) {
        return Ok((None, Vec::new()));
    }
    let tree = repo
        .find_tree(tree_id)
        .map_err(git_err(repo, "reading the new tree"))?;
    if parent.is_none() && tree.is_empty() {
        return Ok((None, Vec::new()));
    }
    // The new tree differs from the parent only under the scope paths: a
    // diff limited to them does not walk (and inflate) every subtree.
    let mut opts = DiffOptions::new();
    if let Some(scope) = scope {
        for rel in scope {
            opts.pathspec(rel);
        }
        opts.disable_pathspec_match(true);
    }
    let mut diff = repo
        .diff_tree_to_tree(parent_tree.as_ref(), Some(&tree), Some(&mut opts))
        .map_err(git_err(repo, "listing the commit's changes"))?;
    let changes = tree_changes(repo, &mut diff)?;
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

/// The changes of a tree-to-tree diff, renames detected. Cheap: unchanged
/// subtrees have equal ids and are not descended into.
pub(super) fn tree_changes(
    repo: &Repository,
    diff: &mut Diff<'_>,
) -> Result<Vec<FileChange>, GitError> {
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
/// else `gitlockd <gitlockd@HOSTNAME>` (see [`super::Identity`]).
pub(super) fn signature(
    repo: &Repository,
    name: Option<&str>,
    email: Option<&str>,
) -> Result<Signature<'static>, GitError> {
    super::Identity::resolve(repo, name, email).signature()
}
