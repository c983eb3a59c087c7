//! Typed answers and events of the socket protocol, shared by the daemon
//! (which serialises them) and the CLI (which parses them), so the two
//! cannot drift apart. Golden tests pin the exact lines both ways.
//!
//! Covered so far: `commit`, `restore`, `undo`, `pause` / `resume`, the
//! `status --pending` fields, and every event of `subscribe`. The other
//! answers are still built as JSON maps.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Answer to `commit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitAnswer {
    /// The new commit, or `None` when nothing changed.
    pub commit: Option<String>,
}

/// Answer to `restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreAnswer {
    /// The commit of the restored version, or `None` when it was already so.
    pub commit: Option<String>,
    /// The commit the path was taken from.
    pub source: String,
    /// The commit that saved the path's uncommitted state first, if any.
    pub saved: Option<String>,
}

/// Answer to `undo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoAnswer {
    /// The new commit, or `None` when the undone commit changed nothing.
    pub commit: Option<String>,
    /// The commit whose changes were reverted.
    pub reverted: String,
}

/// Answer to `pause` and `resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseAnswer {
    /// Whether auto-commits are paused now.
    pub paused: bool,
    /// When the pause ends by itself (RFC 3339); `None`: at `resume`.
    #[serde(default)]
    pub until: Option<String>,
}

/// The fields `status` adds to a notebook's entry with `pending: true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingFields {
    /// Uncommitted paths, by the committer's rules; `None` when unknown.
    pub pending_paths: Option<Vec<String>>,
    /// Why they could not be listed.
    pub pending_error: Option<String>,
}

/// One line of a `subscribe` stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A commit landed.
    Commit {
        /// The notebook's name.
        notebook: String,
        /// The new commit.
        commit: String,
        /// The paths it changed.
        paths: Vec<String>,
    },
    /// A notebook's lock was taken or released.
    Lock {
        /// The notebook's name.
        notebook: String,
        /// Held now.
        held: bool,
    },
    /// A notebook's new error (`notebook` set), or the connection's own
    /// (`code`: `too_slow`, no notebook).
    Error {
        /// The notebook, for a notebook's error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        notebook: Option<String>,
        /// The error code, for the connection's own error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        /// What happened.
        message: String,
    },
    /// Sync diverged, or failed with a new error.
    Sync {
        /// The notebook's name.
        notebook: String,
        /// "diverged" or "error".
        state: String,
        /// What happened.
        message: String,
    },
    /// Events were dropped because this subscriber fell behind.
    Lagged {
        /// How many.
        missed: u64,
    },
}

/// A typed answer as the fields of a success line.
pub fn to_fields<T: Serialize>(answer: &T) -> Map<String, Value> {
    match serde_json::to_value(answer) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// The fields of a success line as a typed answer.
pub fn from_fields<T: for<'de> Deserialize<'de>>(
    fields: &Map<String, Value>,
) -> Result<T, serde_json::Error> {
    serde_json::from_value(Value::Object(fields.clone()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `value` serialises to exactly `line`, and `line` parses back to `value`.
    fn golden<T>(value: T, line: &str)
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    {
        assert_eq!(serde_json::to_string(&value).unwrap(), line);
        assert_eq!(serde_json::from_str::<T>(line).unwrap(), value);
    }

    #[test]
    fn answers_golden_both_ways() {
        golden(
            CommitAnswer {
                commit: Some("3f2c".into()),
            },
            r#"{"commit":"3f2c"}"#,
        );
        golden(CommitAnswer { commit: None }, r#"{"commit":null}"#);
        golden(
            RestoreAnswer {
                commit: Some("c".into()),
                source: "s".into(),
                saved: None,
            },
            r#"{"commit":"c","source":"s","saved":null}"#,
        );
        golden(
            UndoAnswer {
                commit: Some("c".into()),
                reverted: "r".into(),
            },
            r#"{"commit":"c","reverted":"r"}"#,
        );
        golden(
            PauseAnswer {
                paused: true,
                until: Some("2026-12-05T10:00:00Z".into()),
            },
            r#"{"paused":true,"until":"2026-12-05T10:00:00Z"}"#,
        );
        golden(
            PendingFields {
                pending_paths: Some(vec!["a.md".into()]),
                pending_error: None,
            },
            r#"{"pending_paths":["a.md"],"pending_error":null}"#,
        );
        // Older daemons answer `resume` without `until`.
        assert_eq!(
            serde_json::from_str::<PauseAnswer>(r#"{"paused":false}"#).unwrap(),
            PauseAnswer {
                paused: false,
                until: None
            }
        );
    }

    #[test]
    fn events_golden_both_ways() {
        golden(
            Event::Commit {
                notebook: "nb".into(),
                commit: "c".into(),
                paths: vec!["a.md".into()],
            },
            r#"{"event":"commit","notebook":"nb","commit":"c","paths":["a.md"]}"#,
        );
        golden(
            Event::Lock {
                notebook: "nb".into(),
                held: true,
            },
            r#"{"event":"lock","notebook":"nb","held":true}"#,
        );
        golden(
            Event::Error {
                notebook: Some("nb".into()),
                code: None,
                message: "m".into(),
            },
            r#"{"event":"error","notebook":"nb","message":"m"}"#,
        );
        golden(
            Event::Error {
                notebook: None,
                code: Some("too_slow".into()),
                message: "m".into(),
            },
            r#"{"event":"error","code":"too_slow","message":"m"}"#,
        );
        golden(
            Event::Sync {
                notebook: "nb".into(),
                state: "diverged".into(),
                message: "m".into(),
            },
            r#"{"event":"sync","notebook":"nb","state":"diverged","message":"m"}"#,
        );
        golden(
            Event::Lagged { missed: 3 },
            r#"{"event":"lagged","missed":3}"#,
        );
    }
}
