//! Reading history, file contents and diffs. Reads never write the index.

use std::path::{Path, PathBuf};

use git2::{
    Commit, Delta, DiffFindOptions, DiffFormat, DiffOptions, ErrorClass, ErrorCode, Oid,
    Repository, Sort, Tree,
};

use super::error::git_err;
use super::write::head_commit;
use super::{CommitInfo, GitError, GitManager};
use crate::lock::LockMode;

impl GitManager {
    /// Commits newest first (at most `limit`; 0 = no limit). With `path`, only
    /// commits that changed it (a file or a directory), following renames back
    /// like `git log --follow`. An unborn branch has no history.
    pub fn get_file_history(
        &self,
        path: Option<&Path>,
        limit: usize,
    ) -> Result<Vec<CommitInfo>, GitError> {
        let _hold = self.hold(LockMode::Shared)?;
        let mut cur = match path {
            Some(p) => Some(self.resolve_path(p)?).filter(|p| !p.as_os_str().is_empty()),
            None => None,
        };
        let repo = self.open()?;
        if head_commit(&repo)?.is_none() {
            return Ok(Vec::new());
        }
        let ctx = "walking history";
        let mut walk = repo.revwalk().map_err(git_err(&repo, ctx))?;
        walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME)
            .map_err(git_err(&repo, ctx))?;
        walk.push_head().map_err(git_err(&repo, ctx))?;
        let mut out = Vec::new();
        for id in walk {
            if limit != 0 && out.len() >= limit {
                break;
            }
            let commit = repo
                .find_commit(id.map_err(git_err(&repo, ctx))?)
                .map_err(git_err(&repo, ctx))?;
            let Some(path) = cur.clone() else {
                out.push(commit_info(&commit));
                continue;
            };
            let tree = commit.tree().map_err(git_err(&repo, ctx))?;
            let here = entry_id(&tree, &path);
            let parents: Vec<Tree<'_>> = commit
                .parents()
                .map(|p| p.tree())
                .collect::<Result<_, _>>()
                .map_err(git_err(&repo, ctx))?;
            // Like git's history simplification: a merge that matches one
            // parent did not change the path.
            let changed = if parents.is_empty() {
                here.is_some()
            } else {
                parents.iter().all(|pt| entry_id(pt, &path) != here)
            };
            if !changed {
                continue;
            }
            out.push(commit_info(&commit));
            // Created here: was it renamed from somewhere? Follow it back.
            if here.is_some() && parents.len() == 1 && entry_id(&parents[0], &path).is_none() {
                cur = renamed_from(&repo, &parents[0], &tree, &path)?.or(Some(path));
            }
        }
        Ok(out)
    }

    /// The bytes of `path` at revision `rev` (anything `git rev-parse`
    /// accepts), with the commit it resolved to. A symlink gives its target.
    pub fn get_file_at_commit(&self, path: &Path, rev: &str) -> Result<(Oid, Vec<u8>), GitError> {
        let _hold = self.hold(LockMode::Shared)?;
        let rel = self.resolve_path(path)?;
        let repo = self.open()?;
        let commit = resolve_commit(&repo, rev)?;
        let tree = commit
            .tree()
            .map_err(git_err(&repo, format!("reading the tree of {rev}")))?;
        let not_found = || GitError::NotFound {
            what: format!("file {} at {rev}", rel.display()),
        };
        let entry = tree.get_path(&rel).map_err(|e| match e.code() {
            ErrorCode::NotFound => not_found(),
            _ => git_err(&repo, format!("reading {} at {rev}", rel.display()))(e),
        })?;
        let object = entry.to_object(&repo).map_err(git_err(
            &repo,
            format!("reading {} at {rev}", rel.display()),
        ))?;
        let blob = object.as_blob().ok_or_else(not_found)?;
        Ok((commit.id(), blob.content().to_vec()))
    }

    /// A unified diff like `git diff`: without revisions HEAD against the work
    /// tree (untracked files included, ignored ones not); with `from` only,
    /// that revision against the work tree; with both, tree against tree
    /// (`to` alone compares HEAD with it). `path` narrows it to one file or
    /// directory. An unborn HEAD counts as the empty tree.
    pub fn get_diff(
        &self,
        from: Option<&str>,
        to: Option<&str>,
        path: Option<&Path>,
    ) -> Result<String, GitError> {
        let _hold = self.hold(LockMode::Shared)?;
        let rel = match path {
            Some(p) => Some(self.resolve_path(p)?).filter(|p| !p.as_os_str().is_empty()),
            None => None,
        };
        let repo = self.open()?;
        let old_tree = match from {
            Some(rev) => Some(tree_of(&repo, rev)?),
            None => head_commit(&repo)?
                .map(|c| c.tree())
                .transpose()
                .map_err(git_err(&repo, "reading HEAD's tree"))?,
        };
        let mut opts = DiffOptions::new();
        if let Some(rel) = &rel {
            opts.pathspec(rel).disable_pathspec_match(true);
        }
        let new_tree = to.map(|rev| tree_of(&repo, rev)).transpose()?;
        if new_tree.is_none() {
            opts.include_untracked(true)
                .recurse_untracked_dirs(true)
                .show_untracked_content(true)
                .update_index(false);
        }
        let render = |opts: &mut DiffOptions| -> Result<Vec<u8>, git2::Error> {
            let mut diff = match &new_tree {
                Some(new_tree) => {
                    repo.diff_tree_to_tree(old_tree.as_ref(), Some(new_tree), Some(opts))?
                }
                None => repo.diff_tree_to_workdir_with_index(old_tree.as_ref(), Some(opts))?,
            };
            diff.find_similar(None)?;
            let mut patch = Vec::new();
            // Against the work tree, what the committer leaves out (the
            // notebook's `ignore` globs, editor temporaries) is left out here.
            let work_tree = new_tree.is_none();
            diff.print(DiffFormat::Patch, |delta, _hunk, line| {
                let file = match delta.status() {
                    git2::Delta::Deleted => delta.old_file(),
                    _ => delta.new_file(),
                };
                if work_tree && file.path().is_some_and(|p| self.filter.is_excluded(p)) {
                    return true;
                }
                if matches!(line.origin(), '+' | '-' | ' ') {
                    patch.push(line.origin() as u8);
                }
                patch.extend_from_slice(line.content());
                true
            })?;
            Ok(patch)
        };
        let mut attempt = 1;
        loop {
            match render(&mut opts) {
                Ok(patch) => return Ok(String::from_utf8_lossy(&patch).into_owned()),
                // A file changed while libgit2 read it: read the tree again.
                Err(e) if new_tree.is_none() && attempt < READ_ATTEMPTS && is_fs_race(&e) => {
                    attempt += 1;
                }
                Err(e) => return Err(git_err(&repo, "computing the diff")(e)),
            }
        }
    }
}

/// How often a read of the work tree is tried while files change under it.
pub(crate) const READ_ATTEMPTS: u32 = 5;

/// True for libgit2 failures caused by a work-tree file changing or
/// vanishing while it was read ("file changed before we could read it").
pub(crate) fn is_fs_race(e: &git2::Error) -> bool {
    matches!(e.class(), ErrorClass::Filesystem | ErrorClass::Os)
}

/// The commit `rev` names; `NotFound` when it names none.
pub(super) fn resolve_commit<'r>(repo: &'r Repository, rev: &str) -> Result<Commit<'r>, GitError> {
    let not_found = || GitError::NotFound {
        what: format!("revision {rev:?}"),
    };
    let object = repo.revparse_single(rev).map_err(|e| match e.code() {
        ErrorCode::NotFound | ErrorCode::InvalidSpec | ErrorCode::Ambiguous => not_found(),
        ErrorCode::UnbornBranch => not_found(),
        _ => git_err(repo, format!("resolving {rev:?}"))(e),
    })?;
    object.peel_to_commit().map_err(|_| not_found())
}

fn tree_of<'r>(repo: &'r Repository, rev: &str) -> Result<Tree<'r>, GitError> {
    resolve_commit(repo, rev)?
        .tree()
        .map_err(git_err(repo, format!("reading the tree of {rev}")))
}

/// The id of `path`'s entry in `tree` (a blob or a subtree), if present.
fn entry_id(tree: &Tree<'_>, path: &Path) -> Option<Oid> {
    tree.get_path(path).ok().map(|e| e.id())
}

/// The old name of `path` when `parent → tree` renamed it.
fn renamed_from(
    repo: &Repository,
    parent: &Tree<'_>,
    tree: &Tree<'_>,
    path: &Path,
) -> Result<Option<PathBuf>, GitError> {
    let ctx = "following a rename";
    let mut diff = repo
        .diff_tree_to_tree(Some(parent), Some(tree), None)
        .map_err(git_err(repo, ctx))?;
    diff.find_similar(Some(DiffFindOptions::new().renames(true)))
        .map_err(git_err(repo, ctx))?;
    Ok(diff
        .deltas()
        .find(|d| d.status() == Delta::Renamed && d.new_file().path() == Some(path))
        .and_then(|d| d.old_file().path().map(Path::to_path_buf)))
}

fn commit_info(commit: &Commit<'_>) -> CommitInfo {
    let author = commit.author();
    let message = String::from_utf8_lossy(commit.message_bytes()).into_owned();
    CommitInfo {
        id: commit.id(),
        summary: commit
            .summary_bytes()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .unwrap_or_default(),
        author_name: String::from_utf8_lossy(author.name_bytes()).into_owned(),
        author_email: String::from_utf8_lossy(author.email_bytes()).into_owned(),
        time: author.when().seconds(),
        offset_minutes: author.when().offset_minutes(),
        message,
    }
}
