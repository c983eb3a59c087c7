//! What each request does, run as the connection's lock owner.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::answers::{
    to_fields, CommitAnswer, DepthAnswer, DiffAnswer, LogAnswer, LogEntry, PauseAnswer,
    PendingFields, PingAnswer, ReloadAnswer, RestoreAnswer, ShowAnswer, SyncAnswer, UndoAnswer,
};
use super::connection::Connection;
use super::protocol::{ErrorCode, Failure, Request, PROTOCOL_VERSION};
use super::server::ReloadFailure;
use crate::git::{AutoCommitOutcome, GitError, RestoreSource};
use crate::lock::{with_owner, LockError, LockMode, LockSnapshot};
use crate::notebook::{Notebook, SyncFailure};
use crate::status::StatusAnswer;

impl Connection {
    /// Runs one request (never `subscribe`, which the connection handles).
    pub(super) async fn dispatch(
        &mut self,
        request: Request,
    ) -> Result<Map<String, Value>, Outcome> {
        match request {
            Request::Ping => Ok(to_fields(&PingAnswer {
                version: env!("CARGO_PKG_VERSION").into(),
                protocol: PROTOCOL_VERSION,
            })),
            Request::Status { notebook, pending } => {
                let answer = self.status(notebook, pending == Some(true)).await?;
                Ok(to_fields(&answer))
            }
            Request::Lock {
                notebook,
                timeout_ms,
                shared,
            } => {
                let nb = self.notebook(&notebook)?;
                let mode = if shared.unwrap_or(false) {
                    LockMode::Shared
                } else {
                    LockMode::Exclusive
                };
                let guard = self
                    .acquire(&nb, mode, self.lock_timeout(timeout_ms))
                    .await?;
                let holds = self.holds.entry(nb.root().to_path_buf()).or_default();
                holds.push(guard);
                Ok(to_fields(&DepthAnswer { depth: holds.len() }))
            }
            Request::Unlock { notebook } => {
                let nb = self.notebook(&notebook)?;
                let holds = self.holds.entry(nb.root().to_path_buf()).or_default();
                if holds.pop().is_none() {
                    return Err(Outcome::Failed(Failure::new(
                        ErrorCode::NotHeld,
                        format!("this connection does not hold the lock of {}", nb.name()),
                    )));
                }
                Ok(to_fields(&DepthAnswer { depth: holds.len() }))
            }
            Request::Commit {
                notebook,
                message,
                paths,
            } => self.commit(notebook, message, paths).await,
            Request::Log {
                notebook,
                path,
                limit,
            } => {
                let limit = limit.unwrap_or(50);
                let commits = self
                    .read_op(&notebook, move |nb| {
                        let path = path
                            .map(|p| nb.git().resolve_path(Path::new(&p)))
                            .transpose()?;
                        nb.git().get_file_history(path.as_deref(), limit)
                    })
                    .await?;
                let commits = commits
                    .iter()
                    .map(|c| LogEntry {
                        id: c.id.to_string(),
                        summary: c.summary.clone(),
                        message: c.message.clone(),
                        author_name: c.author_name.clone(),
                        author_email: c.author_email.clone(),
                        time: c.rfc3339(),
                    })
                    .collect();
                Ok(to_fields(&LogAnswer { commits }))
            }
            Request::Show {
                notebook,
                path,
                rev,
            } => {
                let rev = rev.unwrap_or_else(|| "HEAD".into());
                let (commit, bytes) = self
                    .read_op(&notebook, move |nb| {
                        let path = nb.git().resolve_path(Path::new(&path))?;
                        nb.git().get_file_at_commit(&path, &rev)
                    })
                    .await?;
                Ok(to_fields(&ShowAnswer::new(commit.to_string(), bytes)))
            }
            Request::Diff {
                notebook,
                path,
                from,
                to,
            } => {
                let patch = self
                    .read_op(&notebook, move |nb| {
                        let path = path
                            .map(|p| nb.git().resolve_path(Path::new(&p)))
                            .transpose()?;
                        nb.git()
                            .get_diff(from.as_deref(), to.as_deref(), path.as_deref())
                    })
                    .await?;
                Ok(to_fields(&DiffAnswer { patch }))
            }
            Request::Pause { notebook, for_ms } => {
                let nb = self.notebook(&notebook)?;
                let until = nb.pause(for_ms.map(Duration::from_millis));
                tracing::info!(notebook = %nb.name(), until = ?until.map(crate::notebook::rfc3339), "auto-commits paused");
                Ok(to_fields(&PauseAnswer {
                    paused: true,
                    until: until.map(crate::notebook::rfc3339),
                }))
            }
            Request::Resume { notebook } => {
                let nb = self.notebook(&notebook)?;
                nb.resume();
                tracing::info!(notebook = %nb.name(), "auto-commits resumed");
                Ok(to_fields(&PauseAnswer {
                    paused: false,
                    until: None,
                }))
            }
            Request::Reload => {
                let (tx, rx) = oneshot::channel();
                self.ctx
                    .reload
                    .send(tx)
                    .map_err(|_| internal("the daemon is shutting down"))?;
                match rx.await {
                    Ok(Ok(names)) => Ok(to_fields(&ReloadAnswer { notebooks: names })),
                    // bad_request: the CLI exits 2 on it, as for any invalid config.
                    Ok(Err(ReloadFailure::InvalidConfig(message))) => {
                        Err(Outcome::Failed(Failure::new(
                            ErrorCode::BadRequest,
                            format!(
                                "the new config is invalid; the old one stays in force:\n{message}"
                            ),
                        )))
                    }
                    Ok(Err(ReloadFailure::NotebooksFailed(message))) => {
                        Err(Outcome::Failed(Failure::new(
                            ErrorCode::Git,
                            format!(
                                "the new config is in force, but some notebooks could not start:\n{message}"
                            ),
                        )))
                    }
                    Err(_) => Err(internal("the daemon is shutting down")),
                }
            }
            Request::Restore {
                notebook,
                path,
                rev,
                before,
            } => self.restore(notebook, path, rev, before).await,
            Request::Undo { notebook, commit } => self.undo(notebook, commit).await,
            Request::Sync { notebook } => {
                let nb = self.notebook(&notebook)?;
                match nb.sync_now().await {
                    Ok(o) => Ok(to_fields(&SyncAnswer {
                        fetched: o.fetched,
                        integrated: o.integrated.as_str().into(),
                        pushed: o.pushed,
                        ahead: o.ahead,
                        behind: o.behind,
                        diverged_ref: o.diverged_ref,
                    })),
                    Err(SyncFailure::NotConfigured(m)) => {
                        Err(Outcome::Failed(Failure::new(ErrorCode::BadRequest, m)))
                    }
                    Err(SyncFailure::Conflict(m)) => {
                        Err(Outcome::Failed(Failure::new(ErrorCode::Conflict, m)))
                    }
                    Err(SyncFailure::Failed(m)) => {
                        Err(Outcome::Failed(Failure::new(ErrorCode::Git, m)))
                    }
                }
            }
            Request::Subscribe { .. } => Err(internal("subscribe is handled by the connection")),
        }
    }

    /// The `status` answer: every notebook (running ones first, then those
    /// that could not start), or the one `notebook` names. Never waits for a
    /// lock, not even with `pending`.
    async fn status(
        &mut self,
        notebook: Option<String>,
        pending: bool,
    ) -> Result<StatusAnswer, Outcome> {
        // A notebook that could not start is listed with state "error".
        if let Some(failed) = notebook
            .as_deref()
            .and_then(|arg| self.ctx.registry.find_failed(arg))
        {
            return Ok(StatusAnswer {
                notebooks: vec![failed.status()],
            });
        }
        let running = match &notebook {
            Some(arg) => vec![self.notebook(arg)?],
            None => self.ctx.registry.list(),
        };
        let mut notebooks = Vec::with_capacity(running.len());
        for nb in running {
            let mut entry = nb.status().await;
            if pending {
                entry.pending_list = Some(self.pending_now(nb).await);
            }
            notebooks.push(entry);
        }
        if notebook.is_none() {
            notebooks.extend(self.ctx.registry.failed_status());
        }
        Ok(StatusAnswer { notebooks })
    }

    /// The paths the next commit would take, by the committer's own listing
    /// (git's ignores, the notebook's `ignore` globs, editor temporaries and
    /// `max_file_size` apply), read under a shared hold taken only if it is free now: while
    /// someone else holds the lock, the list is left out and
    /// `pending_error` says who holds it, because `status` never waits.
    async fn pending_now(&mut self, nb: Arc<Notebook>) -> PendingFields {
        let unlisted = |message: String| PendingFields {
            pending_paths: None,
            pending_error: Some(message),
        };
        let guard = match nb.lock().try_lock(self.owner, LockMode::Shared) {
            Ok(guard) => guard,
            Err(LockError::WouldBlock { .. }) => {
                return unlisted(format!(
                    "not listed while the lock of {} is {}: status never waits for it; ask again once it is free",
                    nb.name(),
                    held_by(&nb.lock().snapshot())
                ))
            }
            Err(e) => return unlisted(lock_failure(nb.name(), &e).message),
        };
        let owner = self.owner;
        let task = tokio::task::spawn_blocking(move || {
            let _hold = guard;
            let opts = nb.commit_options();
            let mut paths = with_owner(owner, || nb.git().pending_changes(opts))?;
            // Files over max_file_size are not taken (they are in
            // `skipped_large`), so they are not what the next commit takes.
            let root = nb.git().root().to_path_buf();
            paths.retain(|p| {
                std::fs::symlink_metadata(root.join(p))
                    .map_or(true, |m| !m.is_file() || m.len() <= opts.max_file_size)
            });
            Ok(paths)
        });
        match task.await {
            Ok(Ok(paths)) => PendingFields {
                pending_paths: Some(paths.iter().map(|p| p.display().to_string()).collect()),
                pending_error: None,
            },
            Ok(Err(e)) => unlisted(git_failure(&e).message),
            Err(e) => unlisted(format!("the listing task failed: {e}")),
        }
    }

    /// Runs a read-only git operation under a shared hold taken as this connection.
    async fn read_op<T, F>(&mut self, notebook: &str, op: F) -> Result<T, Outcome>
    where
        T: Send + 'static,
        F: FnOnce(&Notebook) -> Result<T, GitError> + Send + 'static,
    {
        let nb = self.notebook(notebook)?;
        let guard = self
            .acquire(&nb, LockMode::Shared, self.lock_timeout(None))
            .await?;
        let owner = self.owner;
        let task = tokio::task::spawn_blocking(move || {
            let _hold = guard;
            with_owner(owner, || op(&nb))
        });
        match task.await {
            Ok(result) => result.map_err(|e| Outcome::Failed(git_failure(&e))),
            Err(e) => Err(internal(&format!("git task failed: {e}"))),
        }
    }

    /// Runs a git operation that writes, under an exclusive hold taken as
    /// this connection, bracketed by the crash marker.
    async fn write_op<T, F>(&mut self, notebook: &str, op: F) -> Result<(Arc<Notebook>, T), Outcome>
    where
        T: Send + 'static,
        F: FnOnce(&Notebook) -> Result<T, GitError> + Send + 'static,
    {
        let nb = self.notebook(notebook)?;
        let guard = self
            .acquire(&nb, LockMode::Exclusive, self.lock_timeout(None))
            .await?;
        let owner = self.owner;
        let worker = nb.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _hold = guard;
            with_owner(owner, || {
                let _marker = crate::git::probe::begin_write(worker.git_dir())?;
                op(&worker)
            })
        });
        match task.await {
            Ok(result) => result
                .map(|value| (nb, value))
                .map_err(|e| Outcome::Failed(git_failure(&e))),
            Err(e) => Err(internal(&format!("git task failed: {e}"))),
        }
    }

    async fn commit(
        &mut self,
        notebook: String,
        message: Option<String>,
        paths: Option<Vec<String>>,
    ) -> Result<Map<String, Value>, Outcome> {
        let (nb, outcome) = self
            .write_op(&notebook, move |worker| {
                let git = worker.git();
                let paths = paths
                    .map(|ps| {
                        ps.iter()
                            .map(|p| {
                                let rel = git.resolve_path(Path::new(p))?;
                                git.require_known(&rel)?;
                                Ok(rel)
                            })
                            .collect::<Result<Vec<_>, GitError>>()
                    })
                    .transpose()?;
                git.commit_now(
                    message.as_deref(),
                    paths.as_deref(),
                    worker.commit_options(),
                )
            })
            .await?;
        let commit = announce(&nb, &outcome, "committed on request");
        Ok(to_fields(&CommitAnswer { commit }))
    }

    async fn restore(
        &mut self,
        notebook: String,
        path: String,
        rev: Option<String>,
        before: Option<i64>,
    ) -> Result<Map<String, Value>, Outcome> {
        let source = match (rev, before) {
            (Some(_), Some(_)) => {
                return Err(Outcome::Failed(Failure::new(
                    ErrorCode::BadRequest,
                    "`restore` takes `rev` or `before`, not both",
                )))
            }
            (_, Some(secs)) => RestoreSource::Before(secs),
            (rev, None) => RestoreSource::Rev(rev.unwrap_or_else(|| "HEAD".into())),
        };
        let (nb, done) = self
            .write_op(&notebook, move |worker| {
                worker
                    .git()
                    .restore(Path::new(&path), &source, worker.commit_options())
            })
            .await?;
        if let Some(saved) = done.saved {
            nb.announce_commit(saved.to_string(), Vec::new());
        }
        let commit = announce(&nb, &done.outcome, "restored on request");
        Ok(to_fields(&RestoreAnswer {
            commit,
            source: done.source.to_string(),
            saved: done.saved.map(|id| id.to_string()),
        }))
    }

    async fn undo(
        &mut self,
        notebook: String,
        rev: Option<String>,
    ) -> Result<Map<String, Value>, Outcome> {
        let (nb, done) = self
            .write_op(&notebook, move |worker| {
                worker.git().undo(rev.as_deref(), worker.commit_options())
            })
            .await?;
        let commit = announce(&nb, &done.outcome, "undone on request");
        Ok(to_fields(&UndoAnswer {
            commit,
            reverted: done.reverted.to_string(),
        }))
    }
}

/// Logs and announces the commit of a request; returns its id.
fn announce(nb: &Notebook, outcome: &AutoCommitOutcome, what: &str) -> Option<String> {
    let id = outcome.commit?.to_string();
    tracing::info!(notebook = %nb.name(), commit = &id[..id.len().min(8)], files = outcome.paths.len(), "{what}");
    nb.announce_commit(
        id.clone(),
        outcome
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
    );
    Some(id)
}

/// Why a request produced no success.
pub(super) enum Outcome {
    /// Answer with this failure.
    Failed(Failure),
    /// The client went away: answer nothing, close.
    Disconnected,
}

impl From<Failure> for Outcome {
    fn from(f: Failure) -> Outcome {
        Outcome::Failed(f)
    }
}

fn internal(message: &str) -> Outcome {
    Outcome::Failed(Failure::new(ErrorCode::Internal, message))
}

/// Who holds a lock, for a person: e.g. "held exclusive by client pid 12".
fn held_by(snapshot: &LockSnapshot) -> String {
    let who: Vec<String> = snapshot
        .holders
        .iter()
        .map(|h| {
            h.label
                .clone()
                .unwrap_or_else(|| format!("owner {}", h.owner.as_u64()))
        })
        .collect();
    let mode = snapshot.mode.map_or("", |m| m.as_str());
    if who.is_empty() {
        // Free, but queued for: a waiter ahead of us keeps a shared hold out.
        format!("awaited by {} waiter(s)", snapshot.waiters)
    } else {
        format!("held {mode} by {}", who.join(", "))
    }
}

pub(super) fn lock_failure(notebook: &str, e: &LockError) -> Failure {
    match e {
        LockError::Timeout { .. } | LockError::WouldBlock { .. } => {
            Failure::new(ErrorCode::Timeout, format!("{notebook}: {e}"))
        }
        LockError::UpgradeWouldDeadlock { .. } => {
            Failure::new(ErrorCode::Conflict, format!("{notebook}: {e}"))
        }
    }
}

/// Maps a git failure to the protocol's codes.
pub fn git_failure(e: &GitError) -> Failure {
    let code = match e {
        GitError::Busy { .. } | GitError::Refused { .. } => ErrorCode::Conflict,
        GitError::Forbidden { .. } => ErrorCode::Forbidden,
        GitError::NotFound { .. }
        | GitError::BeforeHistory { .. }
        | GitError::UnknownPath { .. } => ErrorCode::NotFound,
        GitError::Lock(LockError::UpgradeWouldDeadlock { .. }) => ErrorCode::Conflict,
        GitError::Lock(_) => ErrorCode::Timeout,
        _ => ErrorCode::Git,
    };
    Failure::new(code, e.describe())
}
