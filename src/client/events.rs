//! `gitlockd events`: the `subscribe` stream, one line per event.
//!
//! Human lines start with the local time, so a terminal left open reads as
//! a log; `--json` passes the daemon's lines through for scripts.

use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value};

use super::args::NotebookArg;
use super::conn::Conn;
use super::format::cell;
use super::{time, write_out, ClientError, ANSWER_TIMEOUT};

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
            let value: Value = serde_json::from_str(&line)
                .map_err(|e| ClientError::Protocol(format!("event is not JSON: {e}")))?;
            format_event(&value, &now_rfc3339())
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
pub fn format_event(event: &Value, at: &str) -> String {
    let field = |key: &str| event.get(key).map(cell).unwrap_or_else(|| "-".into());
    let kind = event.get("event").and_then(Value::as_str).unwrap_or("?");
    let details = match kind {
        "commit" => {
            let id = field("commit");
            let paths: Vec<String> = match event.get("paths") {
                Some(Value::Array(paths)) => paths.iter().map(cell).collect(),
                _ => Vec::new(),
            };
            format!("{} {}", &id[..id.len().min(8)], paths.join(", "))
        }
        "lock" => match event.get("held") {
            Some(Value::Bool(true)) => "held".into(),
            _ => "released".into(),
        },
        "sync" => format!("{}: {}", field("state"), field("message")),
        "error" => match event.get("code") {
            Some(code) => format!("{}: {}", cell(code), field("message")),
            None => field("message"),
        },
        "lagged" => format!("{} events missed", field("missed")),
        _ => event.to_string(),
    };
    let notebook = event
        .get("notebook")
        .map(cell)
        .unwrap_or_else(|| "-".into());
    format!("{}  {notebook}  {kind}  {details}", time::local(at))
}
