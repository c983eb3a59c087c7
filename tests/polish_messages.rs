//! Error messages and small CLI edges found by a README walkthrough: each
//! message names the problem and the fix, run against the real daemon.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Output;

use serde_json::json;
use support::setup;

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn lock_timeout_reads_in_whole_units_and_says_how_to_wait_longer() {
    let (sb, _repos, _d) = setup(&["nb"]);
    let mut holder = sb.client();
    holder.ok("lock", json!({"notebook": "nb", "timeout_ms": 5000}));

    // Over the socket: the same text, code timeout.
    let mut c = sb.client();
    let e = c.err(
        "lock",
        json!({"notebook": "nb", "timeout_ms": 200}),
        "timeout",
    );
    let msg = e["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains("timed out after 2"), "{e}");
    assert!(msg.contains(" ms (held by"), "{e}");
    assert!(!msg.contains("ms)") && !msg.contains('µ'), "{e}");
    assert!(msg.contains("--timeout"), "{e}");

    // From the CLI: exit 75 and the human wait on stderr.
    let out = sb.gl(&["lock", "nb", "--timeout", "300ms", "--", "true"]);
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let waited = err
        .split("timed out after ")
        .nth(1)
        .and_then(|rest| rest.split(" ms (held by").next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(waited.is_some_and(|n| n >= 300), "{}", describe(&out));
    assert!(err.contains("--timeout"), "{}", describe(&out));
}

#[test]
fn restore_at_before_the_history_names_the_oldest_commit_and_the_fix() {
    let (sb, repos, _d) = setup(&["nb"]);
    let r = &repos[0];
    let oldest = r.git(&["log", "--format=%ct", "--reverse"]);
    let oldest: i64 = oldest.lines().next().unwrap().trim().parse().unwrap();
    let rfc = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(oldest as u64),
    )
    .to_string();

    let mut c = sb.client();
    let e = c.err(
        "restore",
        json!({"notebook": "nb", "path": "base.txt", "before": 1000}),
        "not_found",
    );
    let msg = e["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains(&format!("the history starts at {rfc}")), "{e}");
    assert!(msg.contains("use a shorter --at (at most "), "{e}");
    assert!(msg.contains("--rev"), "{e}");

    let out = sb.gl(&["restore", "nb", "base.txt", "--at", "100000h"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains(&format!("the history starts at {rfc}")),
        "{err}"
    );
    // The suggested --at is one the CLI takes, and it reaches the first commit.
    let age = err
        .split("(at most ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap()
        .to_string();
    let out = sb.gl(&["restore", "nb", "base.txt", "--at", &age]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(r.git_output(&["fsck", "--no-progress"]).status.success());
}

#[test]
fn commit_of_an_unknown_path_is_not_found_but_a_deleted_tracked_file_commits() {
    let (sb, repos, _d) = setup(&["nb"]);
    let r = &repos[0];

    let before = r.count();
    let out = sb.gl(&["commit", "nb", "no-such-file"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains("no-such-file not found in"),
        "{}",
        describe(&out)
    );
    assert!(err.contains("check the spelling"), "{}", describe(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("nothing to commit"));
    let mut c = sb.client();
    c.err(
        "commit",
        json!({"notebook": "nb", "paths": ["sub/none.txt"]}),
        "not_found",
    );
    assert_eq!(r.count(), before);

    // Tracked but deleted: the deletion is committed (paused, so the
    // auto-commit does not take it first).
    c.ok("pause", json!({"notebook": "nb"}));
    r.write("sub/gone.txt", "x\n");
    r.git(&["add", "sub/gone.txt"]);
    r.git(&["commit", "-q", "-m", "gone"]);
    std::fs::remove_dir_all(r.path.join("sub")).unwrap();
    let out = sb.gl(&["commit", "nb", "sub"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(r.blob("sub/gone.txt"), None);

    // Staged but never committed, then removed from disk: still a known path.
    r.write("staged.txt", "s\n");
    r.git(&["add", "staged.txt"]);
    std::fs::remove_file(r.path.join("staged.txt")).unwrap();
    let out = sb.gl(&["commit", "nb", "staged.txt"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(r.git_output(&["fsck", "--no-progress"]).status.success());
}

#[test]
fn pause_for_zero_is_a_usage_error() {
    let (sb, _repos, _d) = setup(&["nb"]);
    for zero in ["0s", "0ms", "0h0m"] {
        let out = sb.gl(&["pause", "nb", "--for", zero]);
        assert_eq!(out.status.code(), Some(2), "{zero}: {}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(err.contains("positive duration"), "{}", describe(&out));
        assert!(err.contains("gitlockd resume"), "{}", describe(&out));
    }
    let mut c = sb.client();
    assert_eq!(c.status_of("nb")["paused"], json!(false));
    let out = sb.gl(&["pause", "nb", "--for", "1h"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

#[test]
fn bash_completion_does_not_offer_the_hidden_notebook_names() {
    let (sb, _repos, _d) = setup(&["nb"]);
    let out = sb.gl(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let script = String::from_utf8_lossy(&out.stdout).to_string();
    let offered: Vec<&str> = script
        .lines()
        .filter(|l| l.trim_start().starts_with("opts=\""))
        .collect();
    assert!(offered.iter().any(|l| l.contains(" commit ")), "{script}");
    for line in &offered {
        assert!(
            !line.split([' ', '"']).any(|w| w == "notebook-names"),
            "{line}"
        );
    }
    // The script still asks the hidden command for names, and it answers.
    assert!(script.contains("notebook-names 2>/dev/null"), "{script}");
    let out = sb
        .command(&["--config", sb.config.to_str().unwrap(), "notebook-names"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "nb");
}

#[test]
fn start_up_error_names_the_notebook_once() {
    let sb = support::Sandbox::new();
    let r = sb.repo("br");
    let dir = r.path.clone();
    // A config git cannot parse: the repository cannot be opened.
    std::fs::write(dir.join(".git/config"), "[core\n\tbroken = \n").unwrap();
    sb.write_config("", &[("br", &dir, "")]);
    let _d = sb.start();
    let mut c = sb.client();
    let st = c.wait_last_error("br", &["cannot start notebook br at"]);
    let msg = st["last_error"].as_str().unwrap_or_default();
    assert_eq!(msg.matches("notebook br").count(), 1, "{msg}");
    assert!(!msg.contains("notebook br: "), "{msg}");
}
