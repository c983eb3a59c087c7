//! The socket protocol's wire types: one JSON object per line, in and out.
//!
//! Pure data: parsing a request line never touches a notebook, so every
//! malformed input is answered here with its error code and the connection
//! stays usable (interface.md section 3).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The longest request line accepted, newline excluded.
pub const MAX_LINE: usize = 1 << 20;

/// The protocol version `ping` reports.
pub const PROTOCOL_VERSION: u64 = 1;

/// The error codes of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Malformed line, not an object, missing `cmd`, wrong argument type.
    BadRequest,
    /// `cmd` names no command.
    UnknownCommand,
    /// Notebook, revision or path unknown.
    NotFound,
    /// A lock wait reached its deadline.
    Timeout,
    /// `unlock` of a lock this connection does not hold.
    NotHeld,
    /// A path outside the notebook or in `.git/`, or another uid.
    Forbidden,
    /// A request line over [`MAX_LINE`].
    TooLarge,
    /// The repository is mid-merge/rebase or similar.
    Conflict,
    /// A git operation failed.
    Git,
    /// A bug or an unexpected failure inside gitlockd.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Timeout => "timeout",
            ErrorCode::NotHeld => "not_held",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Git => "git",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A failure to send back: code plus a message for a person.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The contract's code.
    pub code: ErrorCode,
    /// What went wrong, naming the thing.
    pub message: String,
}

impl Failure {
    /// A failure with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

/// Every command of the protocol, with its arguments.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Liveness and version.
    Ping,
    /// The daemon's view of one or all notebooks; never waits for a lock.
    Status {
        /// Only this notebook.
        #[serde(default)]
        notebook: Option<String>,
        /// Also list the uncommitted paths (`pending_paths`), found by the
        /// committer's own rules.
        #[serde(default)]
        pending: Option<bool>,
    },
    /// Take a notebook's lock for this connection.
    Lock {
        /// Name or absolute path.
        notebook: String,
        /// How long to wait; default `lock.timeout`.
        #[serde(default)]
        timeout_ms: Option<u64>,
        /// Shared instead of exclusive.
        #[serde(default)]
        shared: Option<bool>,
    },
    /// Release one level of this connection's hold.
    Unlock {
        /// Name or absolute path.
        notebook: String,
    },
    /// Commit now: everything pending, or only `paths`.
    Commit {
        /// Name or absolute path.
        notebook: String,
        /// The commit message; default from the config template.
        #[serde(default)]
        message: Option<String>,
        /// Only these paths.
        #[serde(default)]
        paths: Option<Vec<String>>,
    },
    /// History, newest first.
    Log {
        /// Name or absolute path.
        notebook: String,
        /// Only commits touching this path.
        #[serde(default)]
        path: Option<String>,
        /// At most this many commits (default 50).
        #[serde(default)]
        limit: Option<usize>,
    },
    /// A file's bytes at a revision.
    Show {
        /// Name or absolute path.
        notebook: String,
        /// The file.
        path: String,
        /// The revision (default HEAD).
        #[serde(default)]
        rev: Option<String>,
    },
    /// A unified diff.
    Diff {
        /// Name or absolute path.
        notebook: String,
        /// Only this path.
        #[serde(default)]
        path: Option<String>,
        /// From this revision (default HEAD).
        #[serde(default)]
        from: Option<String>,
        /// To this revision (default the work tree).
        #[serde(default)]
        to: Option<String>,
    },
    /// Stop auto-commits, until `resume` or for `for_ms`.
    Pause {
        /// Name or absolute path.
        notebook: String,
        /// Resume by itself after this long.
        #[serde(default)]
        for_ms: Option<u64>,
    },
    /// Restart auto-commits.
    Resume {
        /// Name or absolute path.
        notebook: String,
    },
    /// Re-read the config.
    Reload,
    /// Turn this connection into an event stream.
    Subscribe {
        /// Only this notebook's events.
        #[serde(default)]
        notebook: Option<String>,
    },
    /// Sync with the remote now.
    Sync {
        /// Name or absolute path.
        notebook: String,
    },
    /// Write a path as it was at a revision (or a time), as a new commit.
    Restore {
        /// Name or absolute path.
        notebook: String,
        /// The file or folder.
        path: String,
        /// The revision to take it from (default HEAD).
        #[serde(default)]
        rev: Option<String>,
        /// Instead of `rev`: as it was at this Unix time (seconds).
        #[serde(default)]
        before: Option<i64>,
    },
    /// Revert one commit's changes as a new commit.
    Undo {
        /// Name or absolute path.
        notebook: String,
        /// The commit to undo (default HEAD).
        #[serde(default)]
        commit: Option<String>,
    },
}

/// The command names, to tell an unknown command from malformed arguments.
pub const COMMANDS: &[&str] = &[
    "ping",
    "status",
    "lock",
    "unlock",
    "commit",
    "log",
    "show",
    "diff",
    "pause",
    "resume",
    "reload",
    "subscribe",
    "sync",
    "restore",
    "undo",
];

/// One parsed line: the id to echo, and the request or why it is refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// The request's `id`, echoed in the answer (`null` when absent).
    pub id: Value,
    /// The request, or the failure to answer with.
    pub request: Result<Request, Failure>,
}

/// Parses one request line (without its newline).
pub fn parse_line(line: &[u8]) -> Incoming {
    if line.trim_ascii().is_empty() {
        return Incoming {
            id: Value::Null,
            request: Err(Failure::new(
                ErrorCode::BadRequest,
                "empty request line (send one JSON object per line)",
            )),
        };
    }
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            return Incoming {
                id: Value::Null,
                request: Err(Failure::new(
                    ErrorCode::BadRequest,
                    format!("request is not valid JSON: {e}"),
                )),
            }
        }
    };
    let Value::Object(object) = value else {
        return Incoming {
            id: Value::Null,
            request: Err(Failure::new(
                ErrorCode::BadRequest,
                "request must be a JSON object",
            )),
        };
    };
    let id = object.get("id").cloned().unwrap_or(Value::Null);
    let request = match object.get("cmd") {
        None => Err(Failure::new(
            ErrorCode::BadRequest,
            "request has no `cmd` field",
        )),
        Some(Value::String(cmd)) if !COMMANDS.contains(&cmd.as_str()) => Err(Failure::new(
            ErrorCode::UnknownCommand,
            format!("unknown command {cmd:?}; known: {}", COMMANDS.join(", ")),
        )),
        Some(Value::String(cmd)) => {
            let cmd = cmd.clone();
            serde_json::from_value::<Request>(Value::Object(object)).map_err(|e| {
                Failure::new(
                    ErrorCode::BadRequest,
                    format!("bad arguments for `{cmd}`: {e}"),
                )
            })
        }
        Some(_) => Err(Failure::new(
            ErrorCode::BadRequest,
            "`cmd` must be a string",
        )),
    };
    Incoming { id, request }
}

/// A success line: `{"id", "ok": true, ...fields}` plus the newline.
pub fn success(id: &Value, fields: Map<String, Value>) -> Vec<u8> {
    let mut object = Map::with_capacity(fields.len() + 2);
    object.insert("id".into(), id.clone());
    object.insert("ok".into(), Value::Bool(true));
    object.extend(fields);
    to_line(&Value::Object(object))
}

/// The `error` object of a failure line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The contract's code, e.g. `not_found`.
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
}

/// A whole failure line: the envelope of every refused request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureLine {
    /// The request's `id` (`null` when the line had none or was unreadable).
    pub id: Value,
    /// Always `false`.
    pub ok: bool,
    /// Why.
    pub error: ErrorBody,
}

impl From<&Failure> for ErrorBody {
    fn from(failure: &Failure) -> ErrorBody {
        ErrorBody {
            code: failure.code.as_str().into(),
            message: failure.message.clone(),
        }
    }
}

/// A failure line: `{"id", "ok": false, "error": {code, message}}` plus the newline.
pub fn failure(id: &Value, failure: &Failure) -> Vec<u8> {
    let line = FailureLine {
        id: id.clone(),
        ok: false,
        error: failure.into(),
    };
    match serde_json::to_value(&line) {
        Ok(value) => to_line(&value),
        // Unreachable: the line is strings and JSON values.
        Err(_) => b"{}\n".to_vec(),
    }
}

/// Any JSON value as one line (events use it too).
pub fn to_line(value: &Value) -> Vec<u8> {
    // Serializing a Value cannot fail: its keys are strings.
    let mut line = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn code_of(line: &str) -> Option<ErrorCode> {
        parse_line(line.as_bytes()).request.err().map(|f| f.code)
    }

    #[test]
    fn every_command_parses() {
        let table = [
            (r#"{"cmd":"ping"}"#, Request::Ping),
            (
                r#"{"cmd":"status"}"#,
                Request::Status {
                    notebook: None,
                    pending: None,
                },
            ),
            (
                r#"{"cmd":"status","notebook":"nb","pending":true}"#,
                Request::Status {
                    notebook: Some("nb".into()),
                    pending: Some(true),
                },
            ),
            (
                r#"{"cmd":"lock","notebook":"nb","timeout_ms":5,"shared":true}"#,
                Request::Lock {
                    notebook: "nb".into(),
                    timeout_ms: Some(5),
                    shared: Some(true),
                },
            ),
            (
                r#"{"cmd":"unlock","notebook":"nb"}"#,
                Request::Unlock {
                    notebook: "nb".into(),
                },
            ),
            (
                r#"{"cmd":"commit","notebook":"nb","paths":["a"],"message":"m"}"#,
                Request::Commit {
                    notebook: "nb".into(),
                    message: Some("m".into()),
                    paths: Some(vec!["a".into()]),
                },
            ),
            (
                r#"{"cmd":"log","notebook":"nb","limit":3}"#,
                Request::Log {
                    notebook: "nb".into(),
                    path: None,
                    limit: Some(3),
                },
            ),
            (
                r#"{"cmd":"show","notebook":"nb","path":"a","rev":"HEAD~1"}"#,
                Request::Show {
                    notebook: "nb".into(),
                    path: "a".into(),
                    rev: Some("HEAD~1".into()),
                },
            ),
            (
                r#"{"cmd":"diff","notebook":"nb","from":"a","to":"b"}"#,
                Request::Diff {
                    notebook: "nb".into(),
                    path: None,
                    from: Some("a".into()),
                    to: Some("b".into()),
                },
            ),
            (
                r#"{"cmd":"pause","notebook":"nb"}"#,
                Request::Pause {
                    notebook: "nb".into(),
                    for_ms: None,
                },
            ),
            (
                r#"{"cmd":"pause","notebook":"nb","for_ms":3600000}"#,
                Request::Pause {
                    notebook: "nb".into(),
                    for_ms: Some(3_600_000),
                },
            ),
            (
                r#"{"cmd":"restore","notebook":"nb","path":"a.md","rev":"HEAD~2"}"#,
                Request::Restore {
                    notebook: "nb".into(),
                    path: "a.md".into(),
                    rev: Some("HEAD~2".into()),
                    before: None,
                },
            ),
            (
                r#"{"cmd":"restore","notebook":"nb","path":"a.md","before":1700000000}"#,
                Request::Restore {
                    notebook: "nb".into(),
                    path: "a.md".into(),
                    rev: None,
                    before: Some(1_700_000_000),
                },
            ),
            (
                r#"{"cmd":"undo","notebook":"nb"}"#,
                Request::Undo {
                    notebook: "nb".into(),
                    commit: None,
                },
            ),
            (
                r#"{"cmd":"resume","notebook":"nb"}"#,
                Request::Resume {
                    notebook: "nb".into(),
                },
            ),
            (r#"{"cmd":"reload"}"#, Request::Reload),
            (
                r#"{"cmd":"subscribe"}"#,
                Request::Subscribe { notebook: None },
            ),
        ];
        for (line, want) in table {
            assert_eq!(parse_line(line.as_bytes()).request, Ok(want), "{line}");
        }
    }

    #[test]
    fn malformed_lines_get_their_codes() {
        assert_eq!(code_of("not json"), Some(ErrorCode::BadRequest));
        assert_eq!(code_of(""), Some(ErrorCode::BadRequest));
        assert_eq!(code_of(" \t "), Some(ErrorCode::BadRequest));
        assert_eq!(code_of("[1,2]"), Some(ErrorCode::BadRequest));
        assert_eq!(code_of(r#"{"id":1}"#), Some(ErrorCode::BadRequest));
        assert_eq!(code_of(r#"{"cmd":7}"#), Some(ErrorCode::BadRequest));
        assert_eq!(
            code_of(r#"{"cmd":"nope"}"#),
            Some(ErrorCode::UnknownCommand)
        );
        assert_eq!(code_of(r#"{"cmd":"lock"}"#), Some(ErrorCode::BadRequest));
        assert_eq!(
            code_of(r#"{"cmd":"lock","notebook":1}"#),
            Some(ErrorCode::BadRequest)
        );
        assert_eq!(
            code_of(r#"{"cmd":"lock","notebook":"nb","timeout_ms":"soon"}"#),
            Some(ErrorCode::BadRequest)
        );
        assert_eq!(
            code_of(r#"{"cmd":"lock","notebook":"nb","timeout_ms":-1}"#),
            Some(ErrorCode::BadRequest)
        );
    }

    #[test]
    fn ids_are_kept_even_on_failures() {
        let incoming = parse_line(br#"{"id":{"a":[1]},"cmd":"nope"}"#);
        assert_eq!(incoming.id, json!({"a":[1]}));
        assert_eq!(parse_line(br#"{"cmd":"ping"}"#).id, Value::Null);
    }

    #[test]
    fn golden_lines() {
        let mut fields = Map::new();
        fields.insert("depth".into(), json!(1));
        assert_eq!(
            String::from_utf8(success(&json!(7), fields)).unwrap(),
            "{\"depth\":1,\"id\":7,\"ok\":true}\n"
        );
        assert_eq!(
            String::from_utf8(failure(
                &json!("x"),
                &Failure::new(ErrorCode::NotHeld, "not held")
            ))
            .unwrap(),
            "{\"error\":{\"code\":\"not_held\",\"message\":\"not held\"},\"id\":\"x\",\"ok\":false}\n"
        );
        // ... and the client reads the same line back as the same type.
        let line: FailureLine = serde_json::from_str(
            r#"{"error":{"code":"not_held","message":"not held"},"id":"x","ok":false}"#,
        )
        .unwrap();
        assert_eq!(
            line,
            FailureLine {
                id: json!("x"),
                ok: false,
                error: ErrorBody {
                    code: "not_held".into(),
                    message: "not held".into()
                }
            }
        );
    }
}
#[cfg(test)]
mod extra_field_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[test]
    fn unit_commands_accept_id_and_extra_fields() {
        assert_eq!(
            parse_line(br#"{"id":1,"cmd":"ping","x":2}"#).request,
            Ok(Request::Ping)
        );
        assert_eq!(
            parse_line(br#"{"id":1,"cmd":"reload"}"#).request,
            Ok(Request::Reload)
        );
        assert!(
            parse_line(br#"{"id":1,"cmd":"status","notebook":"a","zz":1}"#)
                .request
                .is_ok()
        );
    }
}
