//! The human output of `status` and `log`: daemon answers laid out as aligned tables.
//!
//! `status` is read as the protocol's typed answer ([`status_table`],
//! [`lock_summary`], [`pending_lines`]): a reply of another shape is refused
//! when it is parsed, never half-shown. `log` is still laid out from JSON.

use serde_json::Value;

use crate::status::{LastCommit, LockStatus, NotebookStatus, StatusAnswer, SyncStatus};

/// A string as a table cell: one line, empty as "-".
fn text(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.replace(['\n', '\t'], " ")
    }
}

/// An optional string as a table cell: "-" when absent.
fn opt_text(s: Option<&str>) -> String {
    s.map_or_else(|| "-".into(), text)
}

/// A yes/no cell.
fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// A JSON value as a table cell: strings bare, null as "-", others compact.
pub(super) fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => text(s),
        Value::Bool(b) => yes_no(*b),
        other => other.to_string(),
    }
}

/// A commit id cut to 8 characters (other strings unchanged).
fn short_id(id: &str) -> String {
    if id.len() > 8 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        id[..8].to_string()
    } else {
        id.to_string()
    }
}

/// The LOCK column from its parts: "free", or e.g. "exclusive by client pid
/// 123, 2 waiting"; `holders` is already one phrase (empty: none known).
fn lock_text(held: bool, mode: Option<&str>, holders: &str, waiters: u64) -> String {
    let mut text = if held {
        let mode = mode.unwrap_or("held");
        if holders.is_empty() {
            mode.to_string()
        } else {
            format!("{mode} by {holders}")
        }
    } else {
        "free".to_string()
    };
    if waiters > 0 {
        text.push_str(&format!(", {waiters} waiting"));
    }
    text
}

/// The LOCK column of a typed `lock` object.
pub fn lock_summary(lock: &LockStatus) -> String {
    let holders: Vec<String> = lock
        .holders
        .iter()
        .map(|h| match &h.label {
            Some(label) => label.clone(),
            None => format!("owner {}", h.owner),
        })
        .collect();
    lock_text(
        lock.held,
        lock.mode.as_deref(),
        &holders.join(", "),
        lock.waiters as u64,
    )
}

/// The LAST-COMMIT column from an id and a time, either maybe unknown.
fn commit_text(id: Option<&str>, time: Option<&str>) -> Option<String> {
    match (id.map(short_id), time) {
        (Some(id), Some(time)) => Some(format!("{id} {}", super::time::local(time))),
        (Some(id), None) => Some(id),
        (None, Some(time)) => Some(super::time::local(time)),
        (None, None) => None,
    }
}

/// The LAST-COMMIT column of a typed entry.
fn last_commit_text(last: Option<&LastCommit>) -> String {
    last.and_then(|c| commit_text(Some(&c.id), Some(&c.time)))
        .unwrap_or_else(|| "-".into())
}

/// An error as one line: `None` when there is none.
fn error_text(error: Option<&str>) -> Option<String> {
    error.filter(|e| !e.is_empty()).map(text)
}

/// The SYNC column of a typed entry: e.g. "origin/main ok +1 -0".
fn sync_text(sync: &SyncStatus) -> String {
    format!(
        "{}/{} {} +{} -{}",
        text(&sync.remote),
        opt_text(sync.branch.as_deref()),
        text(&sync.state),
        sync.ahead,
        sync.behind
    )
}

/// One notebook's line of the `status` table, column by column.
struct StatusRow {
    name: String,
    path: String,
    branch: String,
    head: String,
    pending: String,
    paused: String,
    state: String,
    lock: String,
    last_commit: String,
    /// `None`: sync is off for this notebook.
    sync: Option<String>,
    /// The notebook's error, else its sync's ("sync: ..."), else "-".
    error: String,
}

impl StatusRow {
    /// The row of a typed entry.
    fn typed(nb: &NotebookStatus) -> StatusRow {
        let sync_error = nb
            .sync
            .as_ref()
            .and_then(|s| error_text(s.last_error.as_deref()))
            .map(|e| format!("sync: {e}"));
        StatusRow {
            name: text(&nb.name),
            path: text(&nb.path),
            branch: opt_text(nb.branch.as_deref()),
            head: nb.head.as_deref().map_or_else(|| "-".into(), short_id),
            pending: nb.pending.to_string(),
            paused: match (nb.paused, nb.paused_until.as_deref()) {
                (true, Some(until)) => format!("until {}", super::time::local(until)),
                (paused, _) => yes_no(paused),
            },
            state: text(&nb.state),
            lock: lock_summary(&nb.lock),
            last_commit: last_commit_text(nb.last_commit.as_ref()),
            sync: nb.sync.as_ref().map(sync_text),
            error: match (error_text(nb.last_error.as_deref()), nb.next_try.as_deref()) {
                (Some(e), Some(next)) => format!("{e} (next try {})", super::time::local(next)),
                (Some(e), None) => e,
                (None, _) => sync_error.unwrap_or_else(|| "-".into()),
            },
        }
    }
}

/// The `status` table; the SYNC column only when some notebook syncs.
fn status_rows(rows: Vec<StatusRow>) -> String {
    if rows.is_empty() {
        return "no notebooks configured\n".into();
    }
    let with_sync = rows.iter().any(|r| r.sync.is_some());
    let mut header: Vec<String> = [
        "NAME",
        "PATH",
        "BRANCH",
        "HEAD",
        "PENDING",
        "PAUSED",
        "STATE",
        "LOCK",
        "LAST-COMMIT",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if with_sync {
        header.push("SYNC".into());
    }
    header.push("LAST-ERROR".into());
    let mut lines = vec![header];
    for r in rows {
        let mut line = vec![
            r.name,
            r.path,
            r.branch,
            r.head,
            r.pending,
            r.paused,
            r.state,
            r.lock,
            r.last_commit,
        ];
        if with_sync {
            line.push(r.sync.unwrap_or_else(|| "-".into()));
        }
        line.push(r.error);
        lines.push(line);
    }
    table(&lines)
}

/// Lay out rows as left-aligned columns separated by two spaces.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut text = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, c) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(c);
            if i + 1 < row.len() {
                line.push_str(&" ".repeat(widths[i] - c.chars().count()));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// The human `status` table of a typed answer.
pub fn status_table(answer: &StatusAnswer) -> String {
    status_rows(answer.notebooks.iter().map(StatusRow::typed).collect())
}

/// The human `log`: one `SHORTID  TIME  AUTHOR  SUMMARY` line per commit.
pub fn format_log(commits: &Value) -> String {
    let Value::Array(commits) = commits else {
        return String::new();
    };
    let rows: Vec<Vec<String>> = commits
        .iter()
        .map(|c| {
            let s = |key: &str| c.get(key).map(cell).unwrap_or_else(|| "-".into());
            vec![
                c.get("id")
                    .and_then(Value::as_str)
                    .map(short_id)
                    .unwrap_or_else(|| "-".into()),
                c.get("time")
                    .and_then(Value::as_str)
                    .map(super::time::local)
                    .unwrap_or_else(|| s("time")),
                s("author_name"),
                s("summary"),
            ]
        })
        .collect();
    table(&rows)
}

/// One notebook's `--pending` part from its name and its listing.
fn pending_part(name: &str, paths: Option<&[String]>, error: Option<&str>) -> String {
    match (paths, error) {
        (Some([]), _) => format!("\n{name}: nothing pending\n"),
        (Some(paths), _) => {
            let mut part = format!("\n{name}: {} pending\n", paths.len());
            for p in paths {
                part.push_str(&format!("  {}\n", text(p)));
            }
            part
        }
        (None, Some(e)) => format!("\n{name}: cannot list pending paths: {e}\n"),
        (None, None) => String::new(),
    }
}

/// The `--pending` part of human `status`: each notebook's uncommitted paths.
pub fn pending_lines(answer: &StatusAnswer) -> String {
    answer
        .notebooks
        .iter()
        .filter_map(|nb| {
            let listing = nb.pending_list.as_ref()?;
            Some(pending_part(
                &text(&nb.name),
                listing.pending_paths.as_deref(),
                listing.pending_error.as_deref(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    /// A `status` answer as the daemon sends it: a running notebook held
    /// by a client and syncing to an unnamed branch, one with an unlabelled
    /// holder, and one that could not start.
    fn answer() -> StatusAnswer {
        let lock = |held: bool, holders: Value| {
            json!({"held": held, "mode": if held { json!("exclusive") } else { Value::Null },
                   "holders": holders, "waiters": 2, "acquisitions": 1, "contended": 0,
                   "timeouts": 0, "total_wait_ms": 0.0, "max_wait_ms": 0.0,
                   "total_hold_ms": 0.0, "max_hold_ms": 0.0})
        };
        serde_json::from_value(json!({"notebooks": [
            {"name": "notes", "path": "/home/u/notes", "branch": "main",
             "head": "0123456789abcdef0123456789abcdef01234567", "pending": 2,
             "rescan_pending": false, "paused": false, "paused_until": null, "state": "clean",
             "lock": lock(true, json!([{"owner": 7, "label": "client pid 123", "mode": "exclusive",
                                       "depth": 1, "held_ms": 5}])),
             "last_commit": {"id": "fedcba9876543210fedcba9876543210fedcba98", "files": 1,
                             "time": "2024-01-02T03:04:05Z"},
             "last_error": null, "watches": 3, "watch_problem": null, "commit_via": "libgit2",
             "git_features": [], "skipped_large": [], "skipped_unreadable": [],
             "sync": {"remote": "origin", "branch": null, "state": "error", "ahead": 1,
                      "behind": 0, "last_sync": null, "last_error": "offline\nretrying",
                      "next_try": null, "diverged_ref": null},
             "pending_paths": ["a.md", "b c.md"], "pending_error": null},
            {"name": "w", "path": "/w", "branch": null, "head": null, "pending": 0,
             "paused": true, "state": "merge",
             "lock": lock(true, json!([{"owner": 9, "label": null, "mode": "exclusive",
                                       "depth": 1, "held_ms": 5}])),
             "last_commit": null, "last_error": "", "sync": null,
             "pending_paths": null, "pending_error": "not listed while the lock is held"},
            {"name": "broken", "path": "/b", "branch": null, "head": null, "pending": 0,
             "rescan_pending": false, "paused": false, "paused_until": null, "state": "error",
             "lock": {"held": false, "mode": null, "holders": [], "waiters": 0},
             "last_commit": null, "last_error": "not a git repository",
             "next_try": "2026-12-05T09:01:00Z", "watches": 0, "watch_problem": null,
             "skipped_large": [], "skipped_unreadable": [], "sync": null},
        ]}))
        .unwrap()
    }

    #[test]
    fn typed_status_table() {
        let text = status_table(&answer());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].contains("  SYNC  "), "{text}");
        assert!(lines[1].contains(" 01234567 "), "{text}");
        assert!(
            lines[1].contains("exclusive by client pid 123, 2 waiting"),
            "{text}"
        );
        let t = super::super::time::local("2024-01-02T03:04:05Z");
        assert!(lines[1].contains(&format!("fedcba98 {t}")), "{text}");
        // Sync to the checked-out branch: no branch name on the wire.
        assert!(lines[1].contains("origin/- error +1 -0"), "{text}");
        assert!(lines[1].ends_with("  sync: offline retrying"), "{text}");
        assert!(
            lines[2].contains("exclusive by owner 9, 2 waiting"),
            "{text}"
        );
        assert!(lines[2].contains(" yes "), "{text}");
        assert!(lines[2].ends_with(" -"), "{text}");
        assert!(lines[3].contains(" free "), "{text}");
        // A notebook that could not start says when it is tried again.
        let next = super::super::time::local("2026-12-05T09:01:00Z");
        assert!(
            lines[3].ends_with(&format!("  not a git repository (next try {next})")),
            "{text}"
        );
        let col = lines[0].find("LOCK").unwrap();
        assert_eq!(&lines[3][col..col + 4], "free");
        // A pause with an end says until when.
        let mut paused = answer();
        paused.notebooks[1].paused_until = Some("2026-12-05T10:00:00Z".into());
        let until = super::super::time::local("2026-12-05T10:00:00Z");
        assert!(
            status_table(&paused).contains(&format!(" until {until} ")),
            "{}",
            status_table(&paused)
        );
        assert_eq!(
            status_table(&StatusAnswer {
                notebooks: Vec::new()
            }),
            "no notebooks configured\n"
        );
    }

    #[test]
    fn typed_pending_lines() {
        assert_eq!(
            pending_lines(&answer()),
            "\nnotes: 2 pending\n  a.md\n  b c.md\n\
             \nw: cannot list pending paths: not listed while the lock is held\n"
        );
    }
}
