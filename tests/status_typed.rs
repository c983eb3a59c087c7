//! `status` end to end on the real daemon: `--pending` never waits for a
//! client's hold, and every entry the daemon sends is one the CLI reads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{ok, text, wait_for, Repo, Sandbox};

const LONG: Duration = Duration::from_secs(20);

/// A repository `nb` with one commit, served with a 60 s lock timeout (so a
/// status that waited for a hold would be plain to see) and `extra` in its
/// config entry; `prepare` runs on the repository before the daemon starts.
fn serve(sb: &Sandbox, extra: &str, prepare: impl FnOnce(&Repo)) -> (Repo, support::Daemon) {
    let r = sb.repo("nb");
    r.write("base.txt", "base\n");
    r.git(&["add", "base.txt"]);
    r.git(&["commit", "-q", "-m", "base"]);
    prepare(&r);
    sb.write_config_text(&format!(
        "socket = {:?}\n\n[defaults]\ndebounce = \"100ms\"\n\n[lock]\ntimeout = \"60s\"\n\n\
         [[notebook]]\nname = \"nb\"\npath = {:?}\n{extra}\n",
        sb.socket.display().to_string(),
        r.path.display().to_string()
    ));
    let d = sb.start();
    let mut c = sb.client();
    wait_for(LONG, "the notebook to be open", || {
        let s = c.ok("status", json!({}));
        (s["notebooks"].as_array().unwrap().len() == 1).then_some(())
    });
    (r, d)
}

#[test]
fn status_pending_never_waits_for_a_clients_exclusive_hold() {
    let sb = Sandbox::new();
    let (r, _d) = serve(&sb, "", |_| {});
    let mut holder = sb.client();
    holder.ok("lock", json!({"notebook": "nb"}));
    r.write("held.md", "written under the hold\n");

    // Over the socket: the answer comes long before the 60 s lock timeout,
    // without the list, saying who holds the lock.
    let mut c = sb.client();
    c.send("status", json!({"pending": true}));
    let resp = c
        .recv_within(LONG)
        .expect("status --pending answered while the lock is held");
    assert_eq!(resp["ok"], json!(true), "{resp}");
    let entry = &resp["notebooks"][0];
    assert_eq!(entry["pending_paths"], Value::Null, "{entry}");
    let error = entry["pending_error"].as_str().unwrap();
    assert!(
        error.contains("held exclusive by client pid") && error.contains("never waits"),
        "{error}"
    );
    assert_eq!(entry["lock"]["held"], json!(true), "{entry}");

    // The CLI prints the table and says why the list is missing.
    let out = ok(sb.gl(&["status", "--pending"]));
    assert!(out.lines().nth(1).unwrap().starts_with("nb "), "{out}");
    assert!(
        out.contains("\nnb: cannot list pending paths: not listed while the lock of nb is held exclusive by client pid"),
        "{out}"
    );

    // A shared hold lets the listing through.
    holder.ok("unlock", json!({"notebook": "nb"}));
    let mut reader = sb.client();
    reader.ok("pause", json!({"notebook": "nb"}));
    reader.ok("lock", json!({"notebook": "nb", "shared": true}));
    r.write("shared.md", "written under a shared hold\n");
    let out = ok(sb.gl(&["status", "--pending"]));
    assert!(out.contains("  shared.md\n"), "{out}");
    reader.ok("unlock", json!({"notebook": "nb"}));
    reader.ok("resume", json!({"notebook": "nb"}));
    r.wait_committed("shared.md", "written under a shared hold\n");
    r.wait_committed("held.md", "written under the hold\n");
    r.assert_fsck_clean();
}

#[test]
fn status_reads_a_notebook_syncing_to_its_checked_out_branch() {
    let sb = Sandbox::new();
    let remote = sb.root.join("remote.git");
    let init = std::process::Command::new("git")
        .args(["init", "-q", "--bare"])
        .arg(&remote)
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", text(&init.stderr));
    // No `branch` in [notebook.sync]: sync uses the checked-out branch's
    // name on the remote, and status says so.
    let (_r, _d) = serve(
        &sb,
        "[notebook.sync]\nremote = \"origin\"\npull_interval = \"0s\"\n",
        |r| {
            r.git(&["remote", "add", "origin", remote.to_str().unwrap()]);
        },
    );

    let json_out: Value = serde_json::from_str(&ok(sb.gl(&["status", "--json"]))).unwrap();
    let sync = &json_out["notebooks"][0]["sync"];
    assert_eq!(sync["remote"], json!("origin"), "{json_out}");
    assert_eq!(sync["branch"], json!("main"), "{json_out}");
    let out = ok(sb.gl(&["status"]));
    assert!(out.lines().next().unwrap().contains("  SYNC  "), "{out}");
    assert!(out.contains(" origin/main "), "{out}");
}

/// `--pending` lists what the next commit takes: a file over
/// `max_file_size` is skipped by the commit (and listed in
/// `skipped_large`), so it is not pending.
#[test]
fn status_pending_leaves_out_files_over_max_file_size() {
    let sb = Sandbox::new();
    let (r, _d) = serve(&sb, "max_file_size = \"1KiB\"", |_| {});
    let mut c = sb.client();
    c.ok("pause", json!({"notebook": "nb"}));
    r.write("big.bin", &"x".repeat(2000));
    r.write("small.md", "small\n");
    let resp = c.ok("status", json!({"pending": true}));
    let entry = &resp["notebooks"][0];
    assert_eq!(entry["pending_paths"], json!(["small.md"]), "{entry}");
}
