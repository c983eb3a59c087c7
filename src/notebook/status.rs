//! What `status` shows about a notebook: the health records the loop keeps
//! up to date, and the typed entry ([`crate::status::NotebookStatus`]) built
//! from them.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use super::{rfc3339, Notebook, Shared};
use crate::git::AutoCommitOutcome;
use crate::status::{
    self, LockStatus, NotebookStatus, SkippedLarge, SkippedUnreadable, SyncStatus,
};

/// The last commit gitlockd made, for status.
#[derive(Debug, Clone)]
pub(super) struct LastCommit {
    pub(super) id: String,
    pub(super) files: usize,
    pub(super) at: SystemTime,
}

/// What status shows beyond the lock: kept up to date by the loop.
#[derive(Debug, Default)]
pub(super) struct Health {
    /// Repository state when a round last looked ("clean", "merge", ...).
    pub(super) state: String,
    pub(super) last_commit: Option<LastCommit>,
    pub(super) last_error: Option<String>,
    pub(super) skipped_large: Vec<(PathBuf, u64)>,
    /// Files (or folders) gitlockd may not read, with the reason; each is
    /// warned about once, and leaves the list when it is committed or gone.
    pub(super) skipped_unreadable: Vec<(PathBuf, String)>,
    /// Why the watcher asked for rescans, when it did.
    pub(super) watch_problem: Option<String>,
    /// Why the last commit went through `git` (empty: libgit2 made it).
    pub(super) git_features: Vec<String>,
    /// The last round failed in a way only a change can fix (a hook or a
    /// filter refused): the next file event retries at once, after debounce.
    pub(super) retry_on_change: bool,
}

/// What status shows about sync (only for notebooks with `[notebook.sync]`).
#[derive(Debug, Default)]
pub(super) struct SyncHealth {
    /// "ok", "diverged" or "error".
    pub(super) state: String,
    pub(super) ahead: usize,
    pub(super) behind: usize,
    pub(super) last_sync: Option<SystemTime>,
    pub(super) last_error: Option<String>,
    pub(super) next_try: Option<SystemTime>,
    pub(super) diverged_ref: Option<String>,
}

impl Notebook {
    /// This notebook's entry in the `status` response. Never waits for the lock.
    pub async fn status(&self) -> NotebookStatus {
        let shared = self.shared.clone();
        let hooks = self.shared.config.hooks;
        let probe = tokio::task::spawn_blocking(move || {
            let git = &shared.git;
            // Live: an auto-commit waiting for push_delay counts at once.
            let counts = shared.config.sync.as_ref().and_then(|cfg| {
                shared
                    .live_counts
                    .lock()
                    .refresh(git.root(), cfg)
                    .map_err(|e| tracing::debug!(notebook = %shared.name, error = %e, "ahead/behind unknown"))
                    .ok()
            });
            (
                git.head_info().ok(),
                git.repo_state().ok(),
                counts,
                git.git_features(hooks).unwrap_or_default(),
            )
        })
        .await
        .ok();
        let (head, repo_state, counts, features) = probe.unwrap_or((None, None, None, Vec::new()));
        let (branch, head_id) = match &head {
            Some(h) => (h.branch.clone(), h.head.map(|oid| oid.to_string())),
            None => (None, None),
        };
        let lock = LockStatus::from(&self.shared.lock.snapshot());
        let (pending, rescan) = {
            let p = self.shared.pending.lock();
            (p.paths.len(), p.rescan)
        };
        let health = self.shared.health.lock();
        // What the repository asks for now, plus what the last commit found
        // in the files themselves (a filter attribute, skip-worktree entries).
        let mut git_features: Vec<String> = features.iter().map(ToString::to_string).collect();
        for f in &health.git_features {
            if !git_features.contains(f) {
                git_features.push(f.clone());
            }
        }
        let commit_via = if git_features.is_empty() {
            "libgit2"
        } else {
            "git"
        };
        NotebookStatus {
            name: self.shared.name.clone(),
            path: self.root().display().to_string(),
            branch: branch.clone(),
            head: head_id,
            pending,
            rescan_pending: rescan,
            paused: self.is_paused(),
            paused_until: self.shared.pause_until.lock().map(rfc3339),
            state: match repo_state {
                Some(crate::git::RepoState::Busy(state)) => state,
                _ => health.state.clone(),
            },
            lock,
            last_commit: health.last_commit.as_ref().map(|c| status::LastCommit {
                id: c.id.clone(),
                files: c.files,
                time: rfc3339(c.at),
            }),
            last_error: health
                .last_error
                .clone()
                .or_else(|| health.watch_problem.clone()),
            next_try: None,
            watches: self
                .shared
                .watches
                .lock()
                .as_ref()
                .map_or(0, |c| c.load(Ordering::Relaxed) as u64),
            watch_problem: health.watch_problem.clone(),
            commit_via: Some(commit_via.into()),
            git_features: Some(git_features),
            skipped_large: health
                .skipped_large
                .iter()
                .map(|(p, size)| SkippedLarge {
                    path: p.display().to_string(),
                    size: *size,
                })
                .collect(),
            skipped_unreadable: health
                .skipped_unreadable
                .iter()
                .map(|(p, reason)| SkippedUnreadable {
                    path: p.display().to_string(),
                    error: reason.clone(),
                })
                .collect(),
            sync: health_sync(&self.shared, counts, branch.as_deref()),
            pending_list: None,
        }
    }
}

/// The `sync` part of status; `counts`: live ahead/behind from local refs
/// (else the last sync's).
pub(super) fn health_sync(
    shared: &Shared,
    counts: Option<(usize, usize)>,
    checked_out: Option<&str>,
) -> Option<SyncStatus> {
    let cfg = shared.config.sync.as_ref()?;
    let guard = shared.sync_health.lock();
    let h = guard.as_ref()?;
    let (ahead, behind) = counts.unwrap_or((h.ahead, h.behind));
    Some(SyncStatus {
        remote: cfg.remote.clone(),
        // Sync follows the checked-out branch when the config names none.
        branch: cfg
            .branch
            .clone()
            .or_else(|| checked_out.map(str::to_string)),
        state: h.state.clone(),
        ahead,
        behind,
        last_sync: h.last_sync.map(rfc3339),
        last_error: h.last_error.clone(),
        next_try: h.next_try.map(rfc3339),
        diverged_ref: h.diverged_ref.clone(),
    })
}

/// Updates the list of unreadable paths after a round: warns once about a
/// new one, keeps one this round did not look at while it is still
/// unreadable, and queues one that became readable (a `chown` makes no
/// event), so it is committed and leaves the list.
pub(super) fn track_unreadable(shared: &Shared, health: &mut Health, outcome: &AutoCommitOutcome) {
    let mut now_unreadable = outcome.unreadable.clone();
    let previous = std::mem::take(&mut health.skipped_unreadable);
    for (path, reason) in &now_unreadable {
        if !previous.iter().any(|(p, _)| p == path) {
            tracing::warn!(notebook = %shared.name, path = %path.display(), error = %reason, "file cannot be read: it is not committed until its permissions let gitlockd read it (chmod/chown it)");
        }
    }
    let mut readable_again = Vec::new();
    for (path, reason) in previous {
        if outcome.paths.contains(&path) || now_unreadable.iter().any(|(p, _)| *p == path) {
            continue;
        }
        let full = shared.git.root().join(&path);
        let still = match std::fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() => std::fs::read_dir(&full).is_err(),
            Ok(m) if m.is_file() => std::fs::File::open(&full).is_err(),
            // Inside a folder that may not be entered.
            Err(e) => e.kind() == std::io::ErrorKind::PermissionDenied,
            Ok(_) => false,
        };
        if still {
            now_unreadable.push((path, reason));
        } else if full.exists() {
            readable_again.push(path);
        }
    }
    if !readable_again.is_empty() {
        let mut pending = shared.pending.lock();
        pending.paths.extend(readable_again);
        pending.touch(Instant::now());
    }
    now_unreadable.sort();
    now_unreadable.dedup_by(|a, b| a.0 == b.0);
    health.skipped_unreadable = now_unreadable;
}
