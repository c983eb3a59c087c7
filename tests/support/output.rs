//! Checking a finished CLI run: its exit code, with both streams in the
//! message when it is not the expected one.

use std::process::Output;

/// Bytes as text, invalid UTF-8 replaced.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// A run's exit code and both streams, for a failure message.
pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// The run's stdout, after checking it exited 0.
#[track_caller]
pub fn ok(out: Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    text(&out.stdout)
}

/// Checks the run exited with `code`.
#[track_caller]
pub fn exits(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", describe(out));
}
