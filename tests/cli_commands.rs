//! Every CLI subcommand as a real process against the real daemon
//! (interface.md section 1): output, exit codes, NOTEBOOK forms.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{describe, exits, ok, setup, text, Sandbox};

const WINDOW: Duration = Duration::from_millis(600);

/// Column start (in chars) of each header word of a table's first line.
fn columns(header: &str) -> Vec<(String, usize)> {
    let mut cols = Vec::new();
    let chars: Vec<char> = header.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != ' ' && (i == 0 || chars[i - 1] == ' ') {
            let start = i;
            while i < chars.len() && chars[i] != ' ' {
                i += 1;
            }
            cols.push((chars[start..i].iter().collect(), start));
        } else {
            i += 1;
        }
    }
    cols
}

#[test]
fn status_human_aligned_and_json() {
    let (sb, repos, _d) = setup(&["nb", "a-much-longer-name"]);
    let mut holder = sb.client();
    holder.ok("lock", json!({"notebook": "nb"}));
    let out = ok(sb.gl(&["status"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "header + one line per notebook:\n{out}");
    let cols = columns(lines[0]);
    let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "NAME",
        "PATH",
        "BRANCH",
        "HEAD",
        "PENDING",
        "PAUSED",
        "LOCK",
        "LAST-COMMIT",
        "LAST-ERROR",
    ] {
        assert!(names.contains(&want), "no {want} column:\n{out}");
    }
    let col = |name: &str| cols.iter().find(|(n, _)| n == name).unwrap().1;
    for line in &lines[1..] {
        let chars: Vec<char> = line.chars().collect();
        let at = |c: usize| chars[c..].iter().collect::<String>();
        assert_eq!(chars[col("PATH") - 1], ' ', "PATH aligned:\n{out}");
        assert!(
            at(col("PATH")).starts_with(&sb.root.join("books").display().to_string()),
            "PATH aligned:\n{out}"
        );
        assert!(
            at(col("BRANCH")).starts_with("main "),
            "BRANCH aligned:\n{out}"
        );
        assert!(
            at(col("PAUSED")).starts_with("no "),
            "PAUSED aligned:\n{out}"
        );
    }
    for (name, repo) in [("nb", &repos[0]), ("a-much-longer-name", &repos[1])] {
        let line = lines[1..]
            .iter()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{out}"));
        let chars: Vec<char> = line.chars().collect();
        let at = |c: usize| chars[c..].iter().collect::<String>();
        assert!(
            at(col("PATH")).starts_with(&repo.path.display().to_string()),
            "{out}"
        );
        let head = repo.head().unwrap();
        assert!(
            at(col("HEAD")).starts_with(&head[..8]),
            "HEAD column:\n{out}"
        );
        let lock = at(col("LOCK"));
        if name == "nb" {
            assert!(
                lock.starts_with("exclusive"),
                "LOCK shows the holder:\n{out}"
            );
        } else {
            assert!(lock.starts_with("free"), "LOCK free:\n{out}");
        }
    }
    let json_out = ok(sb.gl(&["status", "--json"]));
    let v: Value = serde_json::from_str(&json_out).expect("status --json prints JSON");
    assert_eq!(v["ok"], json!(true));
    let list = v["notebooks"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{v}");
    let nb = list.iter().find(|e| e["name"] == json!("nb")).unwrap();
    assert_eq!(nb["lock"]["held"], json!(true));
    assert_eq!(nb["head"], json!(repos[0].head().unwrap()));
    // One notebook, by name and by `.` from inside it.
    let v: Value = serde_json::from_str(&ok(sb.gl(&["status", "--json", "nb"]))).unwrap();
    assert_eq!(v["notebooks"].as_array().unwrap().len(), 1);
    let v: Value =
        serde_json::from_str(&ok(sb.gl_in(&repos[1].path, &["status", "--json", "."]))).unwrap();
    assert_eq!(
        v["notebooks"][0]["name"],
        json!("a-much-longer-name"),
        "{v}"
    );
    exits(&sb.gl(&["status", "missing"]), 1);
}

#[test]
fn lock_runs_cmd_and_propagates_exit_codes() {
    let (sb, repos, _d) = setup(&["nb"]);
    let marker = sb.root.join("tmp/ran");
    let script = format!("touch {}", marker.display());
    exits(&sb.gl(&["lock", "nb", "--", "sh", "-c", &script]), 0);
    assert!(marker.exists(), "CMD ran");
    for (args, code) in [
        (vec!["true"], 0),
        (vec!["false"], 1),
        (vec!["sh", "-c", "exit 7"], 7),
        (vec!["sh", "-c", "exit 255"], 255),
        (vec!["sh", "-c", "kill -TERM $$"], 128 + 15),
        (vec!["sh", "-c", "kill -KILL $$"], 128 + 9),
        (vec!["sh", "-c", "kill -USR1 $$"], 128 + 10),
        (vec!["no-such-command-anywhere"], 127),
    ] {
        let mut full = vec!["lock", "nb", "--"];
        full.extend(&args);
        exits(&sb.gl(&full), code);
        // And the lock is free again.
        let mut c = sb.client();
        c.ok("lock", json!({"notebook": "nb", "timeout_ms": 5000}));
    }
    // CMD sees the lock held by gitlockd's connection: a concurrent lock times out,
    // and no auto-commit happens while CMD runs.
    let r = &repos[0];
    let probe = format!(
        "echo during > {}/during.txt; {} --socket {} lock nb --timeout 300ms -- true; echo $? > {}/inner",
        r.path.display(),
        support::bin().display(),
        sb.socket.display(),
        sb.root.join("tmp").display(),
    );
    let before = r.head();
    let t = Instant::now();
    let pid_file = sb.root.join("tmp/wait.pid");
    // HEAD is read again inside the hold, at CMD's end: after the release the
    // pending change is committed at once, so reading it later would race.
    let head_end = sb.root.join("tmp/head_end");
    let script = format!(
        "{probe}; echo $$ > {}; sleep 1; git -C {} rev-parse HEAD > {}",
        pid_file.display(),
        r.path.display(),
        head_end.display(),
    );
    exits(&sb.gl(&["lock", "nb", "--", "sh", "-c", &script]), 0);
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert_eq!(
        std::fs::read_to_string(sb.root.join("tmp/inner"))
            .unwrap()
            .trim(),
        "75",
        "a second `gitlockd lock` inside the hold times out with 75"
    );
    assert_eq!(
        std::fs::read_to_string(&head_end).unwrap().trim(),
        before.as_deref().unwrap_or(""),
        "no commit landed while CMD ran"
    );
    r.wait_committed("during.txt", "during\n");
}

#[test]
fn lock_without_daemon_exits_69_and_runs_nothing() {
    let sb = Sandbox::new();
    let nowhere = sb.root.join("run/nobody.sock");
    let marker = sb.root.join("tmp/ran");
    let socket = nowhere.to_str().unwrap();
    for args in [
        vec!["lock", "nb", "--", "touch", marker.to_str().unwrap()],
        vec!["status"],
        vec!["commit", "nb"],
        vec!["log", "nb"],
        vec!["pause", "nb"],
        vec!["reload"],
    ] {
        let mut full = vec!["--socket", socket];
        full.extend(&args);
        let out = sb.command(&full).output().unwrap();
        exits(&out, 69);
        let err = text(&out.stderr);
        assert!(err.contains(socket), "names the socket: {err}");
        assert!(
            err.contains("gitlockd --config") || err.contains("systemctl"),
            "says how to start it: {err}"
        );
    }
    assert!(!marker.exists(), "CMD must not run without the daemon");
    // GITLOCKD_SOCKET does the same as --socket.
    let out = sb
        .command(&["status"])
        .env("GITLOCKD_SOCKET", &nowhere)
        .output()
        .unwrap();
    exits(&out, 69);
    assert!(text(&out.stderr).contains(socket));
}

#[test]
fn lock_timeout_exits_75_while_another_client_holds() {
    let (sb, _repos, _d) = setup(&["nb"]);
    let mut holder = sb.client();
    holder.ok("lock", json!({"notebook": "nb"}));
    let marker = sb.root.join("tmp/ran");
    let t = Instant::now();
    let out = sb.gl(&[
        "lock",
        "nb",
        "--timeout",
        "500ms",
        "--",
        "touch",
        marker.to_str().unwrap(),
    ]);
    exits(&out, 75);
    assert!(
        t.elapsed() >= Duration::from_millis(450),
        "{:?}",
        t.elapsed()
    );
    assert!(!marker.exists(), "CMD must not run after a timeout");
    assert!(!text(&out.stderr).is_empty());
    // Shared holders do not exclude `--shared`, but exclude the exclusive mode.
    holder.ok("unlock", json!({"notebook": "nb"}));
    holder.ok("lock", json!({"notebook": "nb", "shared": true}));
    exits(
        &sb.gl(&["lock", "nb", "--shared", "--timeout", "5s", "--", "true"]),
        0,
    );
    exits(
        &sb.gl(&["lock", "nb", "--timeout", "300ms", "--", "true"]),
        75,
    );
    assert_eq!(
        holder.status_of("nb")["lock"]["waiters"],
        json!(0),
        "the timed-out CLI left no waiter"
    );
    // Usage errors are 2.
    exits(
        &sb.gl(&["lock", "nb", "--timeout", "soon", "--", "true"]),
        2,
    );
    exits(&sb.gl(&["lock", "nb"]), 2);
}

#[test]
fn commit_log_show_diff_pause_resume_reload() {
    let (sb, repos, _d) = setup(&["nb"]);
    let r = &repos[0];
    // pause / resume
    let out = ok(sb.gl(&["pause", "nb"]));
    assert!(out.contains("paused"), "{out}");
    assert_eq!(sb.client().status_of("nb")["paused"], json!(true));
    r.write("one.txt", "one\n");
    r.write("two.txt", "two\n");
    r.assert_head_stays(WINDOW, "while paused");
    // diff: HEAD against the work tree, and one path.
    let d = ok(sb.gl(&["diff", "nb"]));
    assert!(d.contains("+one") && d.contains("+two"), "{d}");
    let d = ok(sb.gl(&["diff", "nb", "one.txt"]));
    assert!(d.contains("+one") && !d.contains("two.txt"), "{d}");
    // commit with paths and a message prints the id.
    let out = ok(sb.gl(&["commit", "nb", "-m", "just one", "one.txt"]));
    let id = out.trim();
    assert_eq!(
        Some(id.to_string()),
        r.head(),
        "prints the new commit id: {out}"
    );
    assert_eq!(r.git(&["log", "-1", "--format=%s"]), "just one");
    assert_eq!(r.blob("two.txt"), None);
    // commit from inside the notebook with a cwd-relative path.
    r.write("sub/three.txt", "three\n");
    let out = ok(sb.gl_in(&r.path.join("sub"), &["commit", ".", "three.txt"]));
    assert_eq!(Some(out.trim().to_string()), r.head(), "{out}");
    assert_eq!(r.blob("sub/three.txt").as_deref(), Some("three\n"));
    assert_eq!(r.blob("two.txt"), None);
    let out = ok(sb.gl(&["commit", "nb"]));
    assert_eq!(Some(out.trim().to_string()), r.head());
    assert_eq!(r.blob("two.txt").as_deref(), Some("two\n"));
    let out = ok(sb.gl(&["commit", "nb"]));
    assert!(out.contains("nothing"), "says nothing changed: {out}");
    // log: aligned human lines, -n, PATH, --json.
    let out = ok(sb.gl(&["log", "nb"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with(&r.head().unwrap()[..8]), "{out}");
    assert!(lines[2].ends_with("just one"), "{out}");
    assert!(lines[3].ends_with("base"), "{out}");
    let summary_col = lines[3].len() - "base".len();
    assert!(
        lines[2].len() - "just one".len() == summary_col,
        "summary column aligned:\n{out}"
    );
    assert_eq!(ok(sb.gl(&["log", "nb", "-n", "2"])).lines().count(), 2);
    let only = ok(sb.gl(&["log", "nb", "one.txt"]));
    assert_eq!(only.lines().count(), 1, "{only}");
    assert!(only.contains("just one"));
    let v: Value = serde_json::from_str(&ok(sb.gl(&["log", "nb", "--json", "-n", "1"]))).unwrap();
    assert_eq!(v[0]["id"], json!(r.head().unwrap()), "{v}");
    assert!(v[0].get("author_email").is_some());
    // show: exact bytes, --rev, binary.
    assert_eq!(ok(sb.gl(&["show", "nb", "one.txt"])), "one\n");
    r.write("one.txt", "one v2\n");
    ok(sb.gl(&["commit", "nb"]));
    assert_eq!(ok(sb.gl(&["show", "nb", "one.txt"])), "one v2\n");
    assert_eq!(
        ok(sb.gl(&["show", "nb", "one.txt", "--rev", "HEAD~1"])),
        "one\n"
    );
    let bin: Vec<u8> = (0u8..=255).collect();
    std::fs::write(r.path.join("bin.dat"), &bin).unwrap();
    ok(sb.gl(&["commit", "nb", "bin.dat"]));
    let out = sb.gl(&["show", "nb", "bin.dat"]);
    exits(&out, 0);
    assert_eq!(out.stdout, bin, "show writes the exact bytes");
    exits(&sb.gl(&["show", "nb", "nope.txt"]), 1);
    exits(&sb.gl(&["show", "nb", "../outside"]), 1);
    // diff between revisions.
    let d = ok(sb.gl(&["diff", "nb", "--from", "HEAD~2", "--to", "HEAD~1"]));
    assert!(d.contains("-one") && d.contains("+one v2"), "{d}");
    // resume: pending changes are committed.
    r.write("late.txt", "late\n");
    let out = ok(sb.gl(&["resume", "nb"]));
    assert!(out.contains("resumed"), "{out}");
    r.wait_committed("late.txt", "late\n");
    // reload prints the configured names.
    let extra = sb.repo("extra");
    sb.write_config("", &[("nb", &r.path, ""), ("extra", &extra.path, "")]);
    let out = ok(sb.gl(&["reload"]));
    let mut names: Vec<&str> = out.lines().collect();
    names.sort();
    assert_eq!(names, ["extra", "nb"], "{out}");
    assert_eq!(r.status_porcelain(), "");
    r.assert_fsck_clean();
}

#[test]
fn notebook_as_name_dot_subdirectory_and_path() {
    let (sb, repos, _d) = setup(&["nb", "other"]);
    let r = &repos[0];
    r.write("deep/dir/f.txt", "f\n");
    r.wait_committed("deep/dir/f.txt", "f\n");
    let deep = r.path.join("deep/dir");
    let forms: Vec<(std::path::PathBuf, String)> = vec![
        (sb.root.clone(), "nb".into()),
        (r.path.clone(), ".".into()),
        (deep.clone(), ".".into()),
        (deep.clone(), "..".into()),
        (sb.root.clone(), deep.display().to_string()),
        (sb.root.clone(), "books/nb/deep".into()),
        (repos[1].path.clone(), r.path.display().to_string()),
    ];
    for (cwd, arg) in &forms {
        let what = format!("NOTEBOOK {arg:?} in {}", cwd.display());
        let out = sb.gl_in(cwd, &["log", arg, "--json", "-n", "1"]);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", describe(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v[0]["id"], json!(r.head().unwrap()), "{what}");
        // show: PATH relative to the cwd when it exists there.
        let out = sb.gl_in(cwd, &["status", "--json", arg]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["notebooks"][0]["name"], json!("nb"), "{what}");
        exits(
            &sb.gl_in(cwd, &["lock", arg, "--timeout", "5s", "--", "true"]),
            0,
        );
    }
    assert_eq!(ok(sb.gl_in(&deep, &["show", ".", "f.txt"])), "f\n");
    assert_eq!(ok(sb.gl_in(&deep, &["show", ".", "deep/dir/f.txt"])), "f\n");
    // A name that is not a notebook, and a folder outside every notebook.
    exits(&sb.gl(&["log", "missing"]), 1);
    exits(&sb.gl_in(&sb.root, &["log", "."]), 1);
    // A directory named like a notebook's name but elsewhere: the name wins.
    std::fs::create_dir_all(sb.root.join("tmp/other")).unwrap();
    let v: Value = serde_json::from_str(&ok(
        sb.gl_in(&sb.root.join("tmp"), &["status", "--json", "other"])
    ))
    .unwrap();
    assert_eq!(v["notebooks"][0]["name"], json!("other"));
}

#[test]
fn completions_and_man() {
    let sb = Sandbox::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = sb.command(&["completions", shell]).output().unwrap();
        let stdout = ok(out);
        assert!(stdout.len() > 200, "{shell} completions are empty");
        assert!(stdout.contains("gitlockd"), "{shell}");
        for sub in ["lock", "commit", "status"] {
            assert!(stdout.contains(sub), "{shell} completions lack {sub}");
        }
    }
    exits(&sb.command(&["completions", "tcsh"]).output().unwrap(), 2);
    let man = ok(sb.command(&["man"]).output().unwrap());
    assert!(man.contains(".TH"), "roff title");
    assert!(man.contains(".SH"), "roff sections");
    for sub in [
        "lock",
        "commit",
        "log",
        "show",
        "diff",
        "pause",
        "resume",
        "reload",
        "completions",
    ] {
        assert!(man.contains(sub), "man page lacks {sub}");
    }
    assert!(
        man.contains("69") && man.contains("75"),
        "man page documents the exit codes"
    );
    // Neither needs a daemon, a config or a socket.
    exits(
        &sb.command(&["--socket", "/nonexistent/x.sock", "man"])
            .output()
            .unwrap(),
        0,
    );
}
