//! The typed answer to `status`: one entry per notebook, for a running
//! notebook and for one that could not start (`state` "error", the reason in
//! `last_error`, the retry time in `next_try`). The notebook builds its own
//! entry, the registry a failed one's, the socket sends them and the CLI
//! parses them; golden tests pin both directions.
//!
//! It sits outside `control` because `notebook` and `registry` build it and
//! `control` already depends on both (`control::status_answer` names this
//! module for the socket's wire types).
//!
//! Fields only a running notebook has (`commit_via`, `git_features`, the lock
//! metrics) are left out of a failed notebook's entry rather than faked.
//! Fields beyond the contract's (interface.md, `status`) default when absent,
//! so the CLI still reads a daemon that sends only those.

use serde::{Deserialize, Serialize};

use crate::lock::LockSnapshot;

/// Answer to `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusAnswer {
    /// One entry per notebook, running ones first, in config order.
    pub notebooks: Vec<NotebookStatus>,
}

/// One notebook's entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotebookStatus {
    /// The notebook's name.
    pub name: String,
    /// Its root folder.
    pub path: String,
    /// The checked-out branch; `None` when detached or unknown.
    pub branch: Option<String>,
    /// HEAD's commit; `None` before the first commit.
    pub head: Option<String>,
    /// Changed paths waiting for the next auto-commit.
    pub pending: usize,
    /// A full rescan is due (the watcher lost events).
    #[serde(default)]
    pub rescan_pending: bool,
    /// Auto-commits are paused.
    pub paused: bool,
    /// When the pause ends by itself (RFC 3339); `None`: not paused, or until `resume`.
    #[serde(default)]
    pub paused_until: Option<String>,
    /// "clean", a repository state such as "merge", or "error".
    pub state: String,
    /// The notebook's lock.
    pub lock: LockStatus,
    /// The last commit gitlockd made.
    pub last_commit: Option<LastCommit>,
    /// The last error (or the watcher's problem), for a person.
    pub last_error: Option<String>,
    /// For a notebook that could not start: when the daemon tries again (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_try: Option<String>,
    /// Inotify watches held.
    #[serde(default)]
    pub watches: u64,
    /// Why watching is degraded (e.g. the inotify limit), with the fix.
    #[serde(default)]
    pub watch_problem: Option<String>,
    /// "libgit2", or "git" when the repository needs the git CLI to commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_via: Option<String>,
    /// Why commits go through the git CLI (hooks, filters, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_features: Option<Vec<String>>,
    /// Files left out for being over `max_file_size`.
    #[serde(default)]
    pub skipped_large: Vec<SkippedLarge>,
    /// Files left out because they could not be read.
    #[serde(default)]
    pub skipped_unreadable: Vec<SkippedUnreadable>,
    /// Sync's view; `None` when sync is off.
    #[serde(default)]
    pub sync: Option<SyncStatus>,
    /// With `pending: true` only: the uncommitted paths.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub pending_list: Option<PendingFields>,
}

/// The fields `status` adds to a notebook's entry with `pending: true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingFields {
    /// Uncommitted paths, by the committer's rules; `None` when unknown.
    // Required (though nullable) so that a status entry without the pair
    // parses as "not asked" rather than as an empty pair.
    #[serde(deserialize_with = "Option::deserialize")]
    pub pending_paths: Option<Vec<String>>,
    /// Why they could not be listed.
    #[serde(deserialize_with = "Option::deserialize")]
    pub pending_error: Option<String>,
}

impl NotebookStatus {
    /// The entry of a notebook that could not start: the keys of a running
    /// notebook's, `state` "error", the reason in `last_error` and the retry
    /// time (RFC 3339) in `next_try`; nothing a running notebook only knows.
    pub fn failed(name: String, path: String, error: String, next_try: String) -> NotebookStatus {
        NotebookStatus {
            name,
            path,
            branch: None,
            head: None,
            pending: 0,
            rescan_pending: false,
            paused: false,
            paused_until: None,
            state: "error".into(),
            lock: LockStatus {
                held: false,
                mode: None,
                holders: Vec::new(),
                waiters: 0,
                metrics: None,
            },
            last_commit: None,
            last_error: Some(error),
            next_try: Some(next_try),
            watches: 0,
            watch_problem: None,
            commit_via: None,
            git_features: None,
            skipped_large: Vec::new(),
            skipped_unreadable: Vec::new(),
            sync: None,
            pending_list: None,
        }
    }
}

/// The `lock` object of a status entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockStatus {
    /// Someone holds it.
    pub held: bool,
    /// "exclusive" or "shared" while held.
    pub mode: Option<String>,
    /// Who holds it.
    pub holders: Vec<Holder>,
    /// How many wait for it.
    pub waiters: usize,
    /// Counters since the daemon started; absent for a notebook that could not start.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<LockMetrics>,
}

/// The lock's counters since the daemon started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockMetrics {
    /// Holds granted.
    pub acquisitions: u64,
    /// Holds that had to wait.
    pub contended: u64,
    /// Waits that reached their deadline.
    pub timeouts: u64,
    /// Time spent waiting, summed.
    pub total_wait_ms: f64,
    /// The longest wait.
    pub max_wait_ms: f64,
    /// Time held, summed.
    pub total_hold_ms: f64,
    /// The longest hold.
    pub max_hold_ms: f64,
}

/// One holder of a notebook's lock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
// The contract leaves a holder's fields open: parse what is there.
#[serde(default)]
pub struct Holder {
    /// The owner's id (a connection, or the daemon's committer).
    pub owner: u64,
    /// Who it is, for a person (e.g. "client pid 123").
    pub label: Option<String>,
    /// "exclusive" or "shared".
    pub mode: String,
    /// Nested holds by this owner.
    pub depth: u32,
    /// How long it has held the lock.
    pub held_ms: u64,
}

impl From<&LockSnapshot> for LockStatus {
    /// A running notebook's lock as `status` shows it.
    fn from(snapshot: &LockSnapshot) -> LockStatus {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        let m = &snapshot.metrics;
        LockStatus {
            held: snapshot.held,
            mode: snapshot.mode.map(|mode| mode.as_str().to_string()),
            holders: snapshot
                .holders
                .iter()
                .map(|h| Holder {
                    owner: h.owner.as_u64(),
                    label: h.label.clone(),
                    mode: h.mode.as_str().to_string(),
                    depth: h.depth,
                    held_ms: u64::try_from(h.held_for.as_millis()).unwrap_or(u64::MAX),
                })
                .collect(),
            waiters: snapshot.waiters,
            metrics: Some(LockMetrics {
                acquisitions: m.acquisitions,
                contended: m.contended,
                timeouts: m.timeouts,
                total_wait_ms: ms(m.total_wait),
                max_wait_ms: ms(m.max_wait),
                total_hold_ms: ms(m.total_hold),
                max_hold_ms: ms(m.max_hold),
            }),
        }
    }
}

/// The last commit gitlockd made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastCommit {
    /// Its id.
    pub id: String,
    /// How many files it changed.
    pub files: usize,
    /// When (RFC 3339).
    pub time: String,
}

/// A file over `max_file_size`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedLarge {
    /// Relative to the notebook.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedUnreadable {
    /// Relative to the notebook.
    pub path: String,
    /// Why.
    pub error: String,
}

/// The `sync` object of a status entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// The remote's name.
    pub remote: String,
    /// The remote branch; `None`: the checked-out branch's name (not set in the config).
    pub branch: Option<String>,
    /// "ok", "diverged" or "error".
    pub state: String,
    /// Local commits the remote lacks.
    pub ahead: usize,
    /// Remote commits the branch lacks.
    pub behind: usize,
    /// The last successful sync (RFC 3339).
    pub last_sync: Option<String>,
    /// The last sync error.
    pub last_error: Option<String>,
    /// When sync tries again after an error (RFC 3339).
    pub next_try: Option<String>,
    /// Where the remote's diverged head was kept.
    pub diverged_ref: Option<String>,
}

/// `value` serialises to exactly `line`, and `line` parses back to `value`
/// (the golden tests of every wire type).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn golden<T>(value: T, line: &str)
where
    T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
{
    assert_eq!(serde_json::to_string(&value).unwrap(), line);
    assert_eq!(serde_json::from_str::<T>(line).unwrap(), value);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn running() -> NotebookStatus {
        NotebookStatus {
            name: "nb".into(),
            path: "/n/nb".into(),
            branch: Some("main".into()),
            head: Some("3f2c".into()),
            pending: 1,
            rescan_pending: false,
            paused: true,
            paused_until: Some("2026-12-05T10:00:00Z".into()),
            state: "clean".into(),
            lock: LockStatus {
                held: true,
                mode: Some("shared".into()),
                holders: vec![Holder {
                    owner: 7,
                    label: Some("client pid 12".into()),
                    mode: "shared".into(),
                    depth: 1,
                    held_ms: 40,
                }],
                waiters: 0,
                metrics: Some(LockMetrics {
                    acquisitions: 3,
                    contended: 1,
                    timeouts: 0,
                    total_wait_ms: 1.5,
                    max_wait_ms: 1.5,
                    total_hold_ms: 9.0,
                    max_hold_ms: 4.0,
                }),
            },
            last_commit: Some(LastCommit {
                id: "3f2c".into(),
                files: 2,
                time: "2026-12-05T09:00:00Z".into(),
            }),
            last_error: None,
            next_try: None,
            watches: 4,
            watch_problem: None,
            commit_via: Some("git".into()),
            git_features: Some(vec!["hooks".into()]),
            skipped_large: vec![SkippedLarge {
                path: "big.bin".into(),
                size: 99,
            }],
            skipped_unreadable: vec![SkippedUnreadable {
                path: "x".into(),
                error: "denied".into(),
            }],
            sync: Some(SyncStatus {
                remote: "origin".into(),
                branch: Some("main".into()),
                state: "error".into(),
                ahead: 1,
                behind: 0,
                last_sync: None,
                last_error: Some("offline".into()),
                next_try: Some("2026-12-05T09:01:00Z".into()),
                diverged_ref: None,
            }),
            pending_list: None,
        }
    }

    #[test]
    fn running_notebook_golden_both_ways() {
        golden(
            running(),
            concat!(
                r#"{"name":"nb","path":"/n/nb","branch":"main","head":"3f2c","pending":1,"#,
                r#""rescan_pending":false,"paused":true,"paused_until":"2026-12-05T10:00:00Z","#,
                r#""state":"clean","lock":{"held":true,"mode":"shared","holders":[{"owner":7,"#,
                r#""label":"client pid 12","mode":"shared","depth":1,"held_ms":40}],"waiters":0,"#,
                r#""acquisitions":3,"contended":1,"timeouts":0,"total_wait_ms":1.5,"#,
                r#""max_wait_ms":1.5,"total_hold_ms":9.0,"max_hold_ms":4.0},"#,
                r#""last_commit":{"id":"3f2c","files":2,"time":"2026-12-05T09:00:00Z"},"#,
                r#""last_error":null,"watches":4,"watch_problem":null,"commit_via":"git","#,
                r#""git_features":["hooks"],"skipped_large":[{"path":"big.bin","size":99}],"#,
                r#""skipped_unreadable":[{"path":"x","error":"denied"}],"#,
                r#""sync":{"remote":"origin","branch":"main","state":"error","ahead":1,"#,
                r#""behind":0,"last_sync":null,"last_error":"offline","#,
                r#""next_try":"2026-12-05T09:01:00Z","diverged_ref":null}}"#
            ),
        );
    }

    #[test]
    fn failed_notebook_golden_both_ways() {
        golden(
            NotebookStatus::failed(
                "nb".into(),
                "/n/nb".into(),
                "not a git repository".into(),
                "2026-12-05T09:01:00Z".into(),
            ),
            concat!(
                r#"{"name":"nb","path":"/n/nb","branch":null,"head":null,"pending":0,"#,
                r#""rescan_pending":false,"paused":false,"paused_until":null,"state":"error","#,
                r#""lock":{"held":false,"mode":null,"holders":[],"waiters":0},"#,
                r#""last_commit":null,"last_error":"not a git repository","#,
                r#""next_try":"2026-12-05T09:01:00Z","watches":0,"watch_problem":null,"#,
                r#""skipped_large":[],"skipped_unreadable":[],"sync":null}"#
            ),
        );
    }

    #[test]
    fn sync_to_the_checked_out_branch_names_no_branch() {
        let mut nb = running();
        if let Some(sync) = nb.sync.as_mut() {
            sync.branch = None;
        }
        let line = serde_json::to_string(&nb).unwrap();
        assert!(
            line.contains(r#""sync":{"remote":"origin","branch":null,"state":"error","#),
            "{line}"
        );
        assert_eq!(serde_json::from_str::<NotebookStatus>(&line).unwrap(), nb);
    }

    #[test]
    fn the_contract_fields_alone_parse() {
        let line = concat!(
            r#"{"name":"nb","path":"/n","branch":"main","head":null,"pending":0,"#,
            r#""paused":false,"state":"clean","lock":{"held":false,"mode":null,"#,
            r#""holders":[],"waiters":0},"last_commit":null,"last_error":null}"#
        );
        let nb: NotebookStatus = serde_json::from_str(line).unwrap();
        assert_eq!(nb.name, "nb");
        assert_eq!(nb.sync, None);
        assert_eq!(nb.lock.metrics, None);
        assert_eq!(nb.pending_list, None);
        // ... but not less.
        assert!(serde_json::from_str::<NotebookStatus>(r#"{"name":"nb"}"#).is_err());
    }

    #[test]
    fn lock_status_from_a_snapshot_is_what_status_shows() {
        use crate::lock::{HolderInfo, LockMode, OwnerId};
        use std::time::Duration;
        let owner = OwnerId::fresh();
        let snapshot = LockSnapshot {
            held: true,
            mode: Some(LockMode::Exclusive),
            holders: vec![HolderInfo {
                owner,
                label: Some("client pid 9".into()),
                mode: LockMode::Exclusive,
                depth: 2,
                held_for: Duration::from_micros(40_700),
            }],
            waiters: 1,
            metrics: crate::lock::LockMetrics {
                acquisitions: 5,
                contended: 1,
                timeouts: 0,
                total_wait: Duration::from_micros(2_500),
                max_wait: Duration::from_micros(2_000),
                total_hold: Duration::from_millis(90),
                max_hold: Duration::from_millis(40),
            },
        };
        // The object `Notebook::status` builds by hand today.
        let want = serde_json::json!({
            "held": true, "mode": "exclusive",
            "holders": [{"owner": owner.as_u64(), "label": "client pid 9",
                         "mode": "exclusive", "depth": 2, "held_ms": 40}],
            "waiters": 1, "acquisitions": 5, "contended": 1, "timeouts": 0,
            "total_wait_ms": 2.5, "max_wait_ms": 2.0,
            "total_hold_ms": 90.0, "max_hold_ms": 40.0,
        });
        assert_eq!(
            serde_json::to_value(LockStatus::from(&snapshot)).unwrap(),
            want
        );
    }

    #[test]
    fn pending_fields_ride_along() {
        let mut nb = running();
        nb.pending_list = Some(PendingFields {
            pending_paths: Some(vec!["a.md".into()]),
            pending_error: None,
        });
        let line = serde_json::to_string(&StatusAnswer {
            notebooks: vec![nb.clone()],
        })
        .unwrap();
        assert!(
            line.ends_with(r#""pending_paths":["a.md"],"pending_error":null}]}"#),
            "{line}"
        );
        let back: StatusAnswer = serde_json::from_str(&line).unwrap();
        assert_eq!(back.notebooks, vec![nb]);
    }
}
