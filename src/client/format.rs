//! The human output of `status` and `log`: daemon answers laid out as aligned tables.

use serde_json::{Map, Value};

/// A JSON value as a table cell: strings bare, null as "-", others compact.
pub(super) fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.replace(['\n', '\t'], " "),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
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

/// A count from a number, or the length of a list.
fn count(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::Array(items) => Some(items.len() as u64),
        Value::Object(map) => Some(map.len() as u64),
        _ => None,
    }
}

/// A lock holder, e.g. "client pid 123".
fn holder(value: &Value) -> String {
    let Value::Object(map) = value else {
        return cell(value);
    };
    for key in ["description", "desc", "label"] {
        if let Some(Value::String(s)) = map.get(key) {
            return s.clone();
        }
    }
    let kind = ["kind", "type", "owner", "who"]
        .iter()
        .find_map(|k| map.get(*k).and_then(Value::as_str));
    let pid = map.get("pid").filter(|p| !p.is_null()).map(cell);
    match (kind, pid) {
        (Some(kind), Some(pid)) => format!("{kind} pid {pid}"),
        (Some(kind), None) => kind.to_string(),
        (None, Some(pid)) => format!("pid {pid}"),
        (None, None) => value.to_string(),
    }
}

/// The LOCK column: "free", or e.g. "exclusive by client pid 123, 2 waiting".
pub fn format_lock(lock: Option<&Value>) -> String {
    let Some(Value::Object(lock)) = lock else {
        return lock.map(cell).unwrap_or_else(|| "-".into());
    };
    let held = match lock.get("held") {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0) > 0,
        Some(Value::Null) | None => count(lock.get("holders")).unwrap_or(0) > 0,
        Some(_) => true,
    };
    let waiters = count(lock.get("waiters")).unwrap_or(0);
    let mut text = if held {
        let mode = lock
            .get("mode")
            .and_then(Value::as_str)
            .unwrap_or("held")
            .to_string();
        let holders = match lock.get("holders") {
            Some(Value::Array(list)) if !list.is_empty() => {
                list.iter().map(holder).collect::<Vec<_>>().join(", ")
            }
            Some(Value::Number(n)) => {
                let n = n.as_u64().unwrap_or(0);
                format!("{n} holder{}", if n == 1 { "" } else { "s" })
            }
            _ => String::new(),
        };
        if holders.is_empty() {
            mode
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

/// The LAST-COMMIT column: a short id (and time when the daemon gives one).
fn format_last_commit(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) if !s.is_empty() => short_id(s),
        Some(Value::Object(map)) => {
            let id = map
                .get("id")
                .or_else(|| map.get("commit"))
                .and_then(Value::as_str)
                .map(short_id);
            let time = map.get("time").and_then(Value::as_str);
            match (id, time) {
                (Some(id), Some(time)) => format!("{id} {}", super::time::local(time)),
                (Some(id), None) => id,
                (None, Some(time)) => super::time::local(time),
                (None, None) => Value::Object(map.clone()).to_string(),
            }
        }
        Some(other) => cell(other),
        None => "-".into(),
    }
}

/// An error as one line: a string, or an object's `message`.
fn format_error(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Object(map) => Some(
            map.get("message")
                .and_then(Value::as_str)
                .map(|m| m.replace('\n', " "))
                .unwrap_or_else(|| Value::Object(map.clone()).to_string()),
        ),
        other => Some(cell(other)),
    }
}

/// The SYNC column: e.g. "origin/main ok +1 -0", or "-" when sync is off.
fn format_sync(value: Option<&Value>) -> String {
    let Some(Value::Object(sync)) = value else {
        return "-".into();
    };
    let s = |key: &str| sync.get(key).map(cell).unwrap_or_else(|| "?".into());
    format!(
        "{}/{} {} +{} -{}",
        s("remote"),
        s("branch"),
        s("state"),
        s("ahead"),
        s("behind")
    )
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

/// The human `status` table from a `status` response.
pub fn format_status(resp: &Map<String, Value>) -> String {
    let notebooks = match resp.get("notebooks") {
        Some(Value::Array(list)) => list.as_slice(),
        _ => &[],
    };
    if notebooks.is_empty() {
        return "no notebooks configured\n".into();
    }
    let with_sync = notebooks
        .iter()
        .any(|nb| nb.get("sync").is_some_and(|s| !s.is_null()));
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
    let mut rows = vec![header];
    for nb in notebooks {
        let field = |key: &str| nb.get(key);
        let text = |key: &str| field(key).map(cell).unwrap_or_else(|| "-".into());
        let pending = match count(field("pending")) {
            Some(n) => n.to_string(),
            None => text("pending"),
        };
        let mut row = vec![
            text("name"),
            text("path"),
            text("branch"),
            field("head")
                .and_then(Value::as_str)
                .map(short_id)
                .unwrap_or_else(|| text("head")),
            pending,
            text("paused"),
            text("state"),
            format_lock(field("lock")),
            format_last_commit(field("last_commit")),
        ];
        if with_sync {
            row.push(format_sync(field("sync")));
        }
        let sync_error = field("sync")
            .and_then(|s| format_error(s.get("last_error")))
            .map(|e| format!("sync: {e}"));
        row.push(
            format_error(field("last_error"))
                .or(sync_error)
                .unwrap_or_else(|| "-".into()),
        );
        rows.push(row);
    }
    table(&rows)
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

/// The `--pending` part of human `status`: each notebook's uncommitted paths.
pub fn format_pending(resp: &Map<String, Value>) -> String {
    let notebooks = match resp.get("notebooks") {
        Some(Value::Array(list)) => list.as_slice(),
        _ => &[],
    };
    let mut text = String::new();
    for nb in notebooks {
        let name = nb.get("name").map(cell).unwrap_or_else(|| "-".into());
        match (nb.get("pending_paths"), nb.get("pending_error")) {
            (Some(Value::Array(paths)), _) if paths.is_empty() => {
                text.push_str(&format!("\n{name}: nothing pending\n"));
            }
            (Some(Value::Array(paths)), _) => {
                text.push_str(&format!("\n{name}: {} pending\n", paths.len()));
                for p in paths {
                    text.push_str(&format!("  {}\n", cell(p)));
                }
            }
            (_, Some(Value::String(e))) => {
                text.push_str(&format!("\n{name}: cannot list pending paths: {e}\n"));
            }
            _ => {}
        }
    }
    text
}
