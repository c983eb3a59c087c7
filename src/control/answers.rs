//! Typed answers and events of the socket protocol, shared by the daemon
//! (which serialises them) and the CLI (which parses them), so the two
//! cannot drift apart. Golden tests pin the exact lines both ways.
//!
//! Every command's answer is here, plus every event of `subscribe`; the
//! `status` entry, the larger one, lives in [`crate::status`], and the
//! envelope around each answer (`id`, `ok`, `error`) in [`super::protocol`].

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `pending: true` part of a `status` entry, with the entry's other types.
pub use crate::status::PendingFields;

/// Answer to `ping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingAnswer {
    /// The daemon's version (Cargo's).
    pub version: String,
    /// The protocol version.
    pub protocol: u64,
}

/// Answer to `lock` and `unlock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepthAnswer {
    /// How many holds this connection has on the notebook now.
    pub depth: usize,
}

/// One commit of a `log` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The commit id.
    pub id: String,
    /// The message's first line.
    pub summary: String,
    /// The whole message.
    pub message: String,
    /// The author's name.
    pub author_name: String,
    /// The author's email.
    pub author_email: String,
    /// The author time, RFC 3339 in the author's offset.
    pub time: String,
}

/// Answer to `log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogAnswer {
    /// Newest first.
    pub commits: Vec<LogEntry>,
}

/// Answer to `show`: exactly one of `content` and `content_base64`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShowAnswer {
    /// The commit the revision resolved to.
    pub commit: String,
    /// The file, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// The file in standard base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_base64: Option<String>,
}

impl ShowAnswer {
    /// The answer for a file's `bytes` at `commit`: text when it is UTF-8.
    pub fn new(commit: String, bytes: Vec<u8>) -> ShowAnswer {
        match String::from_utf8(bytes) {
            Ok(text) => ShowAnswer {
                commit,
                content: Some(text),
                content_base64: None,
            },
            Err(e) => ShowAnswer {
                commit,
                content: None,
                content_base64: Some(STANDARD.encode(e.as_bytes())),
            },
        }
    }

    /// The file's bytes, decoding `content_base64` when there is no `content`.
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        match (&self.content, &self.content_base64) {
            (Some(text), _) => Ok(text.clone().into_bytes()),
            (None, Some(b64)) => STANDARD
                .decode(b64)
                .map_err(|e| format!("`content_base64` is not base64: {e}")),
            (None, None) => Err("`show` answered without `content` or `content_base64`".into()),
        }
    }
}

/// Answer to `diff`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffAnswer {
    /// The unified diff; empty when nothing differs.
    pub patch: String,
}

/// Answer to `sync`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncAnswer {
    /// Whether the remote branch was fetched.
    pub fetched: bool,
    /// `up_to_date`, `fast_forward`, `merged` or `diverged`.
    pub integrated: String,
    /// Whether the branch was pushed.
    pub pushed: bool,
    /// Local commits the remote lacks.
    pub ahead: usize,
    /// Remote commits the branch lacks.
    pub behind: usize,
    /// Where the remote's diverged head was kept, when it diverged.
    pub diverged_ref: Option<String>,
}

/// Answer to `reload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadAnswer {
    /// The running notebooks' names, in config order.
    pub notebooks: Vec<String>,
}

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
    use crate::status::golden;

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
        golden(
            PingAnswer {
                version: "0.1.0".into(),
                protocol: 1,
            },
            r#"{"version":"0.1.0","protocol":1}"#,
        );
        golden(DepthAnswer { depth: 2 }, r#"{"depth":2}"#);
        golden(
            LogAnswer {
                commits: vec![LogEntry {
                    id: "3f2c".into(),
                    summary: "s".into(),
                    message: "s\n\nbody".into(),
                    author_name: "A".into(),
                    author_email: "a@x".into(),
                    time: "2026-12-05T10:00:00+01:00".into(),
                }],
            },
            r#"{"commits":[{"id":"3f2c","summary":"s","message":"s\n\nbody","author_name":"A","author_email":"a@x","time":"2026-12-05T10:00:00+01:00"}]}"#,
        );
        golden(
            ShowAnswer::new("c".into(), b"hi\n".to_vec()),
            r#"{"commit":"c","content":"hi\n"}"#,
        );
        golden(
            ShowAnswer::new("c".into(), vec![0xff, 0]),
            r#"{"commit":"c","content_base64":"/wA="}"#,
        );
        golden(
            DiffAnswer {
                patch: "diff --git a/a b/a\n".into(),
            },
            r#"{"patch":"diff --git a/a b/a\n"}"#,
        );
        golden(
            SyncAnswer {
                fetched: true,
                integrated: "fast_forward".into(),
                pushed: false,
                ahead: 0,
                behind: 2,
                diverged_ref: None,
            },
            r#"{"fetched":true,"integrated":"fast_forward","pushed":false,"ahead":0,"behind":2,"diverged_ref":null}"#,
        );
        golden(
            ReloadAnswer {
                notebooks: vec!["a".into(), "b".into()],
            },
            r#"{"notebooks":["a","b"]}"#,
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
    fn show_bytes_both_encodings() {
        let bin = vec![0u8, 0xff, b'a'];
        assert_eq!(
            ShowAnswer::new("c".into(), bin.clone()).bytes().unwrap(),
            bin
        );
        assert_eq!(
            ShowAnswer::new("c".into(), b"text".to_vec())
                .bytes()
                .unwrap(),
            b"text"
        );
        let neither = ShowAnswer {
            commit: "c".into(),
            content: None,
            content_base64: None,
        };
        assert!(neither.bytes().is_err());
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
