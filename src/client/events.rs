//! `gitlockd events`: the `subscribe` stream, one line per event.
//!
//! Human lines start with the local time, so a terminal left open reads as
//! a log; `--json` passes the daemon's lines through for scripts.

use std::io::Write;
use std::path::Path;

use serde_json::Map;

use super::args::NotebookArg;
use super::conn::Conn;
use super::{time, write_out, ClientError, ANSWER_TIMEOUT};
use crate::control::answers::Event;

/// Subscribes (to one notebook, or all) and prints events until the daemon
/// closes the connection (exit 1) or the output goes away.
pub(super) fn stream(
    socket: &Path,
    nb: Option<&NotebookArg>,
    json: bool,
    out: &mut dyn Write,
) -> Result<i32, ClientError> {
    let mut conn = Conn::connect(socket)?;
    match nb {
        Some(nb) => conn.request_nb("subscribe", nb, Map::new(), Some(ANSWER_TIMEOUT))?,
        None => conn.request("subscribe", Map::new(), Some(ANSWER_TIMEOUT))?,
    };
    out.flush().map_err(ClientError::Output)?;
    while let Some(line) = conn.next_line()? {
        let text = if json {
            line.trim_end().to_string()
        } else {
            // An event this client does not know yet is shown as it came.
            match serde_json::from_str::<Event>(&line) {
                Ok(event) => format_event(&event, &now_rfc3339()),
                Err(_) => format!("{}  {}", time::local(&now_rfc3339()), line.trim_end()),
            }
        };
        write_out(out, format!("{text}\n").as_bytes())?;
        out.flush().map_err(ClientError::Output)?;
    }
    Err(ClientError::Protocol(
        "the daemon closed the event stream (stopped, or this client read too slowly)".into(),
    ))
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// One event as a human line: `TIME  NOTEBOOK  KIND  DETAILS`.
pub fn format_event(event: &Event, at: &str) -> String {
    let (notebook, kind, details) = match event {
        Event::Commit {
            notebook,
            commit,
            paths,
        } => (
            Some(notebook),
            "commit",
            format!("{} {}", &commit[..commit.len().min(8)], paths.join(", ")),
        ),
        Event::Lock { notebook, held } => (
            Some(notebook),
            "lock",
            if *held { "held" } else { "released" }.to_string(),
        ),
        Event::Sync {
            notebook,
            state,
            message,
        } => (Some(notebook), "sync", format!("{state}: {message}")),
        Event::Error {
            notebook,
            code,
            message,
        } => (
            notebook.as_ref(),
            "error",
            match code {
                Some(code) => format!("{code}: {message}"),
                None => message.clone(),
            },
        ),
        Event::Lagged { missed } => (None, "lagged", format!("{missed} events missed")),
    };
    let notebook = notebook.map_or("-", String::as_str);
    format!("{}  {notebook}  {kind}  {details}", time::local(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_lines() {
        let at = "2026-12-05T08:33:27Z";
        let t = time::local(at);
        let commit = Event::Commit {
            notebook: "nb".into(),
            commit: "0123456789abcdef".into(),
            paths: vec!["a.md".into(), "b.md".into()],
        };
        assert_eq!(
            format_event(&commit, at),
            format!("{t}  nb  commit  01234567 a.md, b.md")
        );
        let slow = Event::Error {
            notebook: None,
            code: Some("too_slow".into()),
            message: "m".into(),
        };
        assert_eq!(
            format_event(&slow, at),
            format!("{t}  -  error  too_slow: m")
        );
        let sync = Event::Sync {
            notebook: "nb".into(),
            state: "diverged".into(),
            message: "m".into(),
        };
        assert_eq!(
            format_event(&sync, at),
            format!("{t}  nb  sync  diverged: m")
        );
    }
}
