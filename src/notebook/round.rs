//! One commit round: wait for the lock, take the batch, commit it on a
//! blocking thread (plus the round's sync work), then settle the outcome:
//! requeue what did not land, record health, schedule the retry.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::schedule::Backoff;
use super::status::{track_unreadable, LastCommit};
use super::sync_schedule::{SyncDone, SyncWork};
use super::{NotebookEvent, Shared};
use crate::git::{probe, AutoCommitOutcome, GitError};
use crate::lock::{with_owner, LockMode, OwnerId};
use crate::sync::{self as remote_sync, SyncError};

/// The batch a round commits.
struct Batch {
    paths: Vec<PathBuf>,
    rescan: bool,
    /// When its oldest change arrived, kept across retries for max_delay.
    first_at: Option<Instant>,
}

fn min_instant(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Result of one round: its commit part, and its sync part when it had one.
pub(super) struct RoundResult {
    pub(super) commit: Round,
    pub(super) sync: Option<Result<SyncDone, SyncError>>,
}

/// Result of one commit round.
pub(super) enum Round {
    /// Nothing pending when the lock came.
    Idle,
    /// Committed (or found nothing to commit).
    Done(Box<AutoCommitOutcome>),
    /// Could not commit now; the batch is back in `pending`.
    Retry(GitError),
    /// The lock wait timed out (only flushes have a timeout).
    LockTimeout,
}

pub(super) type RoundFuture = Pin<Box<dyn Future<Output = RoundResult> + Send>>;

/// Waits for the lock, takes the batch, commits it on a blocking thread,
/// then does the round's sync work under the same hold.
pub(super) async fn commit_round(
    shared: Arc<Shared>,
    owner: OwnerId,
    timeout: Option<Duration>,
    work: SyncWork,
) -> RoundResult {
    // Paused (also across a restart): the catch-up and the final flush wait
    // for `resume` too; the changes stay pending.
    if work == SyncWork::None && shared.paused.load(Ordering::SeqCst) {
        return RoundResult {
            commit: Round::Idle,
            sync: None,
        };
    }
    let guard = match shared
        .lock
        .lock_async(owner, LockMode::Exclusive, timeout)
        .await
    {
        Ok(g) => g,
        Err(_) => {
            return RoundResult {
                commit: Round::LockTimeout,
                sync: None,
            }
        }
    };
    // Taken only now: everything that arrived while we waited joins this commit.
    // With folders unwatched, every round looks at the whole tree.
    let unwatched = shared.unwatched.load(Ordering::SeqCst);
    let batch = {
        let mut pending = shared.pending.lock();
        if pending.is_empty() && work == SyncWork::None {
            return RoundResult {
                commit: Round::Idle,
                sync: None,
            };
        }
        let batch = Batch {
            paths: pending.take_paths(),
            rescan: std::mem::take(&mut pending.rescan) || unwatched,
            first_at: pending.first_at.take(),
        };
        pending.last_at = None;
        batch
    };
    let batch_first_at = batch.first_at;
    // Decided once: the recheck below depends on how the batch was staged.
    let overdue = batch_first_at.is_some_and(|t| t.elapsed() >= shared.config.max_delay);
    let worker = shared.clone();
    let task = tokio::task::spawn_blocking(move || {
        let _hold = guard;
        with_owner(owner, || {
            let committed = if batch.paths.is_empty() && !batch.rescan {
                Ok(AutoCommitOutcome::default())
            } else {
                commit_batch(&worker, &batch, overdue)
            };
            let sync = match (&committed, worker.config.sync.as_ref(), work) {
                (Ok(_), Some(cfg), SyncWork::Full) => Some(
                    remote_sync::sync_once(worker.git.root(), cfg, cfg.push, &worker.author)
                        .map(SyncDone::Full),
                ),
                (Ok(_), Some(cfg), SyncWork::Push) => {
                    Some(remote_sync::push_only(worker.git.root(), cfg).map(SyncDone::Push))
                }
                _ => None,
            };
            release_freed_memory();
            (committed.map_err(|e| (e, batch)), sync)
        })
    });
    let (committed, sync) = match task.await {
        Ok(result) => result,
        Err(join) => {
            // The blocking task panicked: nothing was committed, so rescan everything.
            let mut pending = shared.pending.lock();
            pending.rescan = true;
            pending.touch(Instant::now());
            return RoundResult {
                commit: Round::Retry(GitError::NotFound {
                    what: format!("internal error in the commit task: {join}"),
                }),
                sync: None,
            };
        }
    };
    let commit = match committed {
        Ok(outcome) => {
            if !outcome.failed.is_empty() {
                // Their filter failed: pending again, retried on the next
                // change or with backoff (see `settle`), never in a tight loop.
                let mut pending = shared.pending.lock();
                pending
                    .paths
                    .extend(outcome.failed.iter().map(|(p, _)| p.clone()));
                pending.touch(Instant::now());
                pending.first_at = min_instant(pending.first_at, batch_first_at);
            }
            if !outcome.recheck.is_empty() {
                // A file changed while staged: look again. libgit2 left it out,
                // so it keeps its first pending time and max_delay still bounds
                // its wait. `git add` committed it as it read it, so what is
                // left is a newer change with a clock of its own (keeping the
                // old one would commit a file under constant writes back to
                // back, as if always overdue). An overdue batch left out only
                // files no read of which was whole: tried again max_delay
                // later (at once would be a busy loop while the writer runs).
                let fresh_clock = !outcome.git_features.is_empty() || overdue;
                let now = Instant::now();
                let mut pending = shared.pending.lock();
                pending.paths.extend(outcome.recheck.iter().cloned());
                pending.touch(now);
                let first = if fresh_clock {
                    Some(now)
                } else {
                    batch_first_at
                };
                pending.first_at = min_instant(pending.first_at, first);
            }
            Round::Done(Box::new(outcome))
        }
        Err((error, batch)) => {
            requeue(&shared, batch);
            Round::Retry(error)
        }
    };
    RoundResult { commit, sync }
}

/// Hands memory freed by a commit back to the kernel. Loading a big index
/// (100,000 entries: ~8 MiB, several copies) on a blocking thread otherwise
/// leaves that thread's malloc arena at its peak while the daemon idles.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn requeue(shared: &Shared, batch: Batch) {
    if batch.paths.is_empty() && !batch.rescan {
        return;
    }
    let mut pending = shared.pending.lock();
    pending.paths.extend(batch.paths);
    pending.rescan |= batch.rescan;
    pending.touch(Instant::now());
    pending.first_at = min_instant(pending.first_at, batch.first_at);
}

/// Stage and commit `batch`; `overdue` (past `max_delay`): a file that keeps
/// changing is committed as read (see `auto_commit_overdue`).
fn commit_batch(
    shared: &Shared,
    batch: &Batch,
    overdue: bool,
) -> Result<AutoCommitOutcome, GitError> {
    let git = &shared.git;
    // A merge, rebase, ... in progress: say so before any scan. This looks at
    // a few files in .git only; conflicts in the index are caught by the commit.
    probe::check_not_busy(git.root())?;
    // Proves, after a crash mid-write, that leftover lock files are ours.
    let _marker = probe::begin_write(&shared.git_dir)?;
    let mut paths = batch.paths.clone();
    if batch.rescan {
        let mut all: BTreeSet<PathBuf> = paths.into_iter().collect();
        all.extend(git.pending_changes(&shared.options)?);
        paths = all.into_iter().collect();
    }
    if paths.is_empty() {
        return Ok(AutoCommitOutcome::default());
    }
    // Past max_delay, a file that keeps changing is committed as read:
    // putting it back for a recheck would postpone it again and again.
    if overdue {
        git.auto_commit_overdue(&paths, &shared.options)
    } else {
        git.auto_commit_on_change(&paths, &shared.options)
    }
}

/// Records a round's outcome (and announces a new `last_error` to
/// subscribers); returns when to retry, if a retry is needed.
pub(super) fn settle(shared: &Shared, result: Round, backoff: &mut Backoff) -> Option<Instant> {
    let before = shared.health.lock().last_error.clone();
    let retry = settle_round(shared, result, backoff);
    let after = shared.health.lock().last_error.clone();
    if let Some(message) = after.filter(|m| before.as_ref() != Some(m)) {
        let _ = shared.events.send(NotebookEvent::Error {
            notebook: shared.name.clone(),
            message,
        });
    }
    retry
}

/// [`settle`] without the event.
fn settle_round(shared: &Shared, result: Round, backoff: &mut Backoff) -> Option<Instant> {
    let now = Instant::now();
    match result {
        Round::Idle => None,
        Round::Done(outcome) => {
            let mut health = shared.health.lock();
            let retry = if let Some((path, message)) = outcome.failed.first() {
                let others = match outcome.failed.len() {
                    1 => String::new(),
                    n => format!(" (and {} more)", n - 1),
                };
                let text = format!(
                    "{} not committed{others}: git add failed: {message}",
                    path.display()
                );
                if health.last_error.as_deref() != Some(text.as_str()) {
                    tracing::error!(notebook = %shared.name, error = %text, "a file could not be staged; it stays pending");
                }
                health.state = "error".into();
                health.last_error = Some(text);
                health.retry_on_change = true;
                Some(now + backoff.step(Duration::from_secs(30)))
            } else {
                backoff.reset();
                health.state = "clean".into();
                health.last_error = None;
                health.retry_on_change = false;
                None
            };
            if outcome.commit.is_some() || !outcome.git_features.is_empty() {
                health.git_features = outcome.git_features.clone();
            }
            for (path, size) in &outcome.skipped_large {
                tracing::warn!(notebook = %shared.name, path = %path.display(), size, limit = shared.config.max_file_size, "file larger than max_file_size is not committed");
            }
            // A file skipped earlier stays reported until it is committed,
            // shrinks or goes: this round's batch may simply not include it.
            let mut skipped = outcome.skipped_large.clone();
            for (path, _) in std::mem::take(&mut health.skipped_large) {
                if outcome.paths.contains(&path) || skipped.iter().any(|(p, _)| *p == path) {
                    continue;
                }
                match std::fs::symlink_metadata(shared.git.root().join(&path)) {
                    Ok(m) if m.is_file() && m.len() > shared.config.max_file_size => {
                        skipped.push((path, m.len()));
                    }
                    _ => {}
                }
            }
            health.skipped_large = skipped;
            track_unreadable(shared, &mut health, &outcome);
            if let Some(id) = outcome.commit {
                let id = id.to_string();
                let short = &id[..id.len().min(8)];
                tracing::info!(notebook = %shared.name, commit = short, files = outcome.paths.len(), "committed");
                health.last_commit = Some(LastCommit {
                    id: id.clone(),
                    files: outcome.paths.len(),
                    at: SystemTime::now(),
                });
                drop(health);
                let _ = shared.events.send(NotebookEvent::Commit {
                    notebook: shared.name.clone(),
                    commit: id,
                    paths: outcome
                        .paths
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect(),
                });
            }
            retry
        }
        Round::LockTimeout => Some(now + backoff.step(Duration::from_secs(5))),
        Round::Retry(error) => {
            let mut health = shared.health.lock();
            match &error {
                GitError::Busy { state } => {
                    if health.state != *state {
                        tracing::info!(notebook = %shared.name, %state, "repository is mid-{state}; auto-commit waits until it is resolved");
                    }
                    health.state = state.clone();
                    health.last_error = Some(format!(
                        "repository is mid-{state}: auto-commit waits until it is finished or aborted"
                    ));
                    // Nothing tells us when the user finishes: look again shortly
                    // (a few stat calls each time, no scan).
                    Some(now + Duration::from_secs(1))
                }
                GitError::IndexLocked { .. } => {
                    let message = error.to_string();
                    if health.last_error.as_deref() != Some(message.as_str()) {
                        tracing::warn!(notebook = %shared.name, error = %message, "repository locked by another process; retrying");
                    }
                    health.last_error = Some(message);
                    Some(now + backoff.step(Duration::from_secs(5)))
                }
                _ => {
                    let message = error.describe();
                    if health.last_error.as_deref() != Some(message.as_str()) {
                        tracing::error!(notebook = %shared.name, error = %message, "auto-commit failed; retrying");
                    }
                    health.state = "error".into();
                    health.last_error = Some(message);
                    // A refusing hook or filter: the user's next save is the
                    // likely fix, so it retries at once; the backoff bounds
                    // retries meanwhile.
                    health.retry_on_change = matches!(error, GitError::Command { .. });
                    Some(now + backoff.step(Duration::from_secs(30)))
                }
            }
        }
    }
}
