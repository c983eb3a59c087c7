//! Committing through the user's `git`, for repositories whose settings
//! libgit2 cannot honour (see `features`): clean filters and git-lfs, sparse
//! checkout, split index, signing, hooks. git's own config then does all of
//! it, exactly as `git add -A <paths> && git commit <paths>` would.
//!
//! The steps, all under the notebook lock the caller holds:
//! 1. `git ls-files -t -c -o --exclude-standard -- <batch>`: the batch's
//!    files as git sees them: tracked (also when ignored), untracked and not
//!    ignored; skip-worktree entries (sparse checkout) and nested
//!    repositories left out, gitlockd's filter and size limit applied.
//! 2. `git add -u` of the tracked ones, `git add -A` of the new ones,
//!    exactly those files (filters run here).
//! 3. `git write-tree`, then, in-process, HEAD's tree with the batch's paths
//!    taken from it: the commit's tree, its changes and message; no commit
//!    when it equals HEAD's.
//! 4. `git commit --only <files>` with the message (hooks and signing run
//!    here); a user's other staged changes stay staged, uncommitted.
//!
//! Any failing step leaves HEAD alone; git's stderr is the error.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use git2::{Oid, Repository, Tree};

use super::error::{git_err, io_err};
use super::features::GitFeature;
use super::git_listing::{nul_list, split_unreadable};
use super::index::check_writable;
use super::message::render_changes_message;
use super::tree::tree_with_files;
use super::write::{head_commit, tree_changes, Batch, MessageSpec, StageSettings};
use super::{GitError, GitManager, Identity};

/// Files git could not stage, with its message.
type FailedFiles = Vec<(PathBuf, String)>;

/// What the caller should know about a file before `git add` sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct FileStamp {
    len: u64,
    mtime: (i64, i64),
    ino: u64,
}

impl FileStamp {
    fn now(path: &Path) -> Option<FileStamp> {
        std::fs::symlink_metadata(path).ok().map(|m| FileStamp {
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ino: m.ino(),
        })
    }
}

impl GitManager {
    /// Stage and commit `rels` (the empty path: everything) through `git`.
    pub(super) fn commit_via_git(
        &self,
        rels: &[PathBuf],
        settings: &StageSettings<'_>,
        message: &MessageSpec<'_>,
        features: &[GitFeature],
    ) -> Result<Batch, GitError> {
        let needed_for = features
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        self.git
            .check_usable()
            .map_err(|e| with_needed_for(e, &needed_for))?;
        let repo = self.open()?;
        check_writable(&repo)?;
        let whole = rels.iter().any(|r| r.as_os_str().is_empty());
        let listed = self.list_files(if whole { &[] } else { rels })?;
        let listed_tracked: BTreeSet<PathBuf> = listed
            .iter()
            .filter(|(_, tracked)| *tracked)
            .map(|(p, _)| p.clone())
            .collect();
        let mut files = Vec::new();
        let mut skipped_large = Vec::new();
        for (rel, _) in listed {
            if settings.filter.is_excluded(&rel) {
                continue;
            }
            let full = self.root.join(&rel);
            match std::fs::symlink_metadata(&full) {
                // A submodule or nested repository: never staged.
                Ok(m) if m.is_dir() => continue,
                Ok(m) if m.is_file() && m.len() > settings.max_file_size => {
                    skipped_large.push((rel, m.len()));
                    continue;
                }
                _ => {}
            }
            files.push(rel);
        }
        let (files, unreadable) = split_unreadable(&self.root, files);
        if files.is_empty() {
            return Ok(Batch {
                id: None,
                changes: Vec::new(),
                skipped_large,
                recheck: Vec::new(),
                failed: Vec::new(),
                unreadable,
            });
        }
        let stamps: Vec<Option<FileStamp>> = files
            .iter()
            .map(|f| FileStamp::now(&self.root.join(f)))
            .collect();
        let (staged, failed) = self.add_files(&repo, &files, &listed_tracked)?;
        let stamps: Vec<Option<FileStamp>> = files
            .iter()
            .zip(stamps)
            .filter(|(f, _)| staged.contains(*f))
            .map(|(_, s)| s)
            .collect();
        let files = staged;
        let out = self.run_git(&repo, &["write-tree"], &[], None)?;
        let full_tree = parse_oid(&out.stdout)?;

        let parent = head_commit(&repo)?;
        let parent_tree = parent
            .as_ref()
            .map(|c| c.tree())
            .transpose()
            .map_err(git_err(&repo, "reading HEAD's tree"))?;
        let full = repo
            .find_tree(full_tree)
            .map_err(git_err(&repo, "reading the index's tree"))?;
        // Exactly what `commit --only <files>` records: HEAD plus the
        // index's state of those files (not of anything else staged).
        let tree_id = tree_with_files(&repo, &full, parent_tree.as_ref(), &files)?;
        let unchanged = parent_tree.as_ref().map(Tree::id) == Some(tree_id);
        let tree = repo
            .find_tree(tree_id)
            .map_err(git_err(&repo, "reading the new tree"))?;
        if unchanged || (parent.is_none() && tree.is_empty()) {
            return Ok(Batch {
                id: None,
                changes: Vec::new(),
                skipped_large,
                recheck: Vec::new(),
                failed,
                unreadable,
            });
        }
        let mut diff = repo
            .diff_tree_to_tree(parent_tree.as_ref(), Some(&tree), None)
            .map_err(git_err(&repo, "listing the commit's changes"))?;
        let changes = tree_changes(&repo, &mut diff)?;
        let text = match message {
            MessageSpec::Literal(text) => (*text).to_string(),
            MessageSpec::Template { template, notebook } => {
                render_changes_message(template, notebook, &changes)
            }
        };
        // `commit --only` refuses a path git does not know at all: one that
        // is in neither the new index nor HEAD (added, then deleted unseen).
        let known: Vec<PathBuf> = files
            .iter()
            .filter(|f| {
                full.get_path(f).is_ok()
                    || parent_tree.as_ref().is_some_and(|t| t.get_path(f).is_ok())
            })
            .cloned()
            .collect();
        let identity = Identity::resolve(&repo, settings.author_name, settings.author_email);
        // Checked here so a name git would refuse fails as libgit2's does.
        identity.signature()?;
        let msg_file = repo.path().join("gitlockd-COMMIT_MSG");
        std::fs::write(&msg_file, text.as_bytes())
            .map_err(io_err(format!("writing {}", msg_file.display())))?;
        let msg_arg = msg_file.to_string_lossy().into_owned();
        let mut args: Vec<&str> = Vec::new();
        if !settings.hooks {
            args.extend(["-c", "core.hooksPath=/dev/null"]);
        }
        args.extend([
            "commit",
            "--quiet",
            "--only",
            "--cleanup=verbatim",
            "--no-edit",
            "--file",
            &msg_arg,
            "--pathspec-from-file=-",
            "--pathspec-file-nul",
        ]);
        let mut env = vec![("GIT_LITERAL_PATHSPECS", "1")];
        env.extend(identity.env());
        let committed = self.run_git(&repo, &args, &env, Some(&nul_list(&known)));
        let _ = std::fs::remove_file(&msg_file);
        committed?;

        // What landed (a hook may have changed it).
        let repo = self.open()?;
        let head = head_commit(&repo)?;
        let head_id = head.as_ref().map(|c| c.id());
        if head_id.is_none() || head_id == parent.as_ref().map(|c| c.id()) {
            return Err(GitError::Command {
                command: "git commit".into(),
                message: "exited successfully but made no commit".into(),
            });
        }
        let changes = match head.as_ref() {
            Some(c) if c.tree_id() != tree_id => {
                let new_tree = c.tree().map_err(git_err(&repo, "reading HEAD's tree"))?;
                let old = c.parent(0).ok().and_then(|p| p.tree().ok());
                let mut diff = repo
                    .diff_tree_to_tree(old.as_ref(), Some(&new_tree), None)
                    .map_err(git_err(&repo, "listing the commit's changes"))?;
                tree_changes(&repo, &mut diff)?
            }
            _ => changes,
        };
        let recheck = files
            .iter()
            .zip(stamps)
            .filter(|(f, before)| FileStamp::now(&self.root.join(f)) != *before)
            .map(|(f, _)| f.clone())
            .collect();
        Ok(Batch {
            id: head_id,
            changes,
            skipped_large,
            recheck,
            failed,
            unreadable,
        })
    }

    /// `git add` of `files`: tracked ones through `add -u`, new ones through
    /// `add -A` (git refuses to `add` a path inside an ignored directory by
    /// name even when it is tracked: it stages it, and fails the command).
    ///
    /// Files whose filter fails (a git-crypt key not unlocked, a broken
    /// driver) must not hold back the rest of the batch: filtered files are
    /// added after the others, one by one when they fail together, and the
    /// ones that still fail are returned with git's message, left out of
    /// this commit. When nothing could be added, that is the error.
    fn add_files(
        &self,
        repo: &Repository,
        files: &[PathBuf],
        tracked: &BTreeSet<PathBuf>,
    ) -> Result<(Vec<PathBuf>, FailedFiles), GitError> {
        let drivers = super::features::filter_drivers(repo);
        let (filtered, plain): (Vec<PathBuf>, Vec<PathBuf>) =
            files.iter().cloned().partition(|f| {
                matches!(
                    super::features::file_feature(repo, f, &drivers),
                    Some(GitFeature::Filter(_))
                )
            });
        self.add_group(repo, &plain, tracked)?;
        let mut staged = plain;
        let mut failed = Vec::new();
        match self.add_group(repo, &filtered, tracked) {
            Ok(()) => staged.extend(filtered),
            Err(GitError::Command { message, .. }) if filtered.len() == 1 => {
                failed.push((filtered[0].clone(), message));
            }
            Err(GitError::Command { .. }) => {
                for f in filtered {
                    match self.add_group(repo, std::slice::from_ref(&f), tracked) {
                        Ok(()) => staged.push(f),
                        Err(GitError::Command { message, .. }) => failed.push((f, message)),
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e),
        }
        if staged.is_empty() && !failed.is_empty() {
            let (path, message) = failed.swap_remove(0);
            return Err(GitError::Command {
                command: format!("git add {}", path.display()),
                message,
            });
        }
        staged.sort();
        Ok((staged, failed))
    }

    /// One `git add -u` (tracked) and one `git add -A` (new) for `files`.
    fn add_group(
        &self,
        repo: &Repository,
        files: &[PathBuf],
        tracked: &BTreeSet<PathBuf>,
    ) -> Result<(), GitError> {
        let (old, new): (Vec<PathBuf>, Vec<PathBuf>) =
            files.iter().cloned().partition(|f| tracked.contains(f));
        let literal = [("GIT_LITERAL_PATHSPECS", "1")];
        for (mode, list) in [("-u", &old), ("-A", &new)] {
            if list.is_empty() {
                continue;
            }
            self.run_git(
                repo,
                &["add", mode, "--pathspec-from-file=-", "--pathspec-file-nul"],
                &literal,
                Some(&nul_list(list)),
            )?;
        }
        Ok(())
    }

    /// Runs a git command that writes; after a timeout the runner removes
    /// the lock files it left ([`super::GitProgram`]'s `exec_writing`).
    fn run_git(
        &self,
        repo: &Repository,
        args: &[&str],
        env: &[(&str, &str)],
        input: Option<&[u8]>,
    ) -> Result<super::cli::Output, GitError> {
        self.git
            .exec_writing(
                (repo.path(), repo.commondir()),
                &self.root,
                args,
                env,
                input,
            )?
            .succeeded(args)
    }
}

fn parse_oid(stdout: &[u8]) -> Result<Oid, GitError> {
    let text = String::from_utf8_lossy(stdout);
    Oid::from_str(text.trim()).map_err(|source| GitError::Git {
        context: format!(
            "reading the tree id git write-tree printed ({:?})",
            text.trim()
        ),
        source,
    })
}

/// The same error, naming the settings that need git.
fn with_needed_for(e: GitError, needed: &str) -> GitError {
    match e {
        GitError::GitMissing {
            program, detail, ..
        } => GitError::GitMissing {
            program,
            detail,
            needed_for: needed.to_string(),
        },
        other => other,
    }
}
