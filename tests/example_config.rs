//! config.example.toml: it is valid, it shows every key with its real
//! default, and it works out of the box (the README's first command): its
//! demo notebook is created next to the file and a change there is committed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use gitlockd::config;
use support::{Repo, Sandbox};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");

fn example_text() -> String {
    std::fs::read_to_string(EXAMPLE).unwrap()
}

/// A copy of the example in its own folder (so its demo notebook lands there).
fn copy_example(sb: &Sandbox) -> PathBuf {
    let dir = sb.root.join("example");
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("config.example.toml");
    std::fs::write(&copy, example_text()).unwrap();
    copy
}

/// Every key of interface.md section 2 (top level, [defaults], [lock],
/// [[notebook]]) and section 6 ([notebook.sync]).
const KEYS: &[(&str, &str)] = &[
    ("", "socket"),
    ("defaults", "debounce"),
    ("defaults", "max_delay"),
    ("defaults", "max_file_size"),
    ("defaults", "message"),
    ("defaults", "author_name"),
    ("defaults", "author_email"),
    ("defaults", "ignore"),
    ("defaults", "init"),
    ("defaults", "hooks"),
    ("lock", "timeout"),
    ("lock", "max_hold"),
    ("notebook", "name"),
    ("notebook", "path"),
    ("notebook.sync", "remote"),
    ("notebook.sync", "branch"),
    ("notebook.sync", "push"),
    ("notebook.sync", "push_delay"),
    ("notebook.sync", "pull_interval"),
];

/// (table, key, commented out) for each
/// `key = value` line, set or commented out. Tables written `# [x]` count.
fn key_lines(text: &str) -> Vec<(String, String, bool)> {
    let mut table = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        let (commented, body) = match trimmed.strip_prefix('#') {
            Some(rest) => (true, rest.trim()),
            None => (false, trimmed),
        };
        if let Some(name) = body.strip_prefix('[') {
            let name = name.trim_start_matches('[');
            if let Some(end) = name.find(']') {
                table = name[..end].trim().to_string();
            }
            continue;
        }
        let Some((key, _)) = body.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.push((table.clone(), key.to_string(), commented));
        }
    }
    out
}

#[test]
fn example_shows_every_key() {
    let text = example_text();
    let lines = key_lines(&text);
    for (table, key) in KEYS {
        assert!(
            lines.iter().any(|(t, k, _)| t == table && k == key),
            "config.example.toml lacks `{key}` in [{table}] (set or commented out)"
        );
    }
    // Every key line is explained: the file has a comment on or above it.
    for line in text
        .lines()
        .filter(|l| l.contains(" = ") && !l.trim_start().starts_with('#'))
    {
        let key = line.split('=').next().unwrap().trim();
        let explained = line.contains('#')
            || ["name", "path", "init"].contains(&key)
            || text.contains(&format!("`{key}`"));
        assert!(explained, "no comment on {line:?}");
    }
}

#[test]
fn example_passes_check_config_and_shows_the_real_defaults() {
    let sb = Sandbox::new();
    let copy = copy_example(&sb);
    let out = sb
        .command(&["check-config", "--config", copy.to_str().unwrap()])
        .current_dir(sb.root.join("home"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "check-config failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let demo = copy.parent().unwrap().join("demo-notebook");
    assert!(stdout.contains("notebook \"demo\""), "{stdout}");
    assert!(
        stdout.contains(demo.to_str().unwrap()),
        "path not resolved next to the file:\n{stdout}"
    );
    assert!(
        !demo.exists(),
        "check-config must start nothing, not even init"
    );

    // The values the example sets are the built-in defaults: the example
    // loads to the same settings as a file holding only its notebook.
    let example = config::load(&copy).unwrap();
    let bare = copy.with_file_name("bare.toml");
    std::fs::write(
        &bare,
        "[[notebook]]\nname = \"demo\"\npath = \"demo-notebook\"\ninit = true\ndebounce = \"500ms\"\n",
    )
    .unwrap();
    let bare = config::load(&bare).unwrap();
    assert_eq!(
        example.lock, bare.lock,
        "[lock] values differ from the defaults"
    );
    assert_eq!(
        example.notebooks, bare.notebooks,
        "[defaults] values differ from the defaults"
    );
    assert_eq!(example.socket, bare.socket);
    assert_eq!(example.notebooks[0].path, demo);
    assert!(example.notebooks[0].init);
}

#[test]
fn example_with_every_commented_key_enabled_is_valid() {
    // The commented-out keys are spelled right and take the values shown.
    let sb = Sandbox::new();
    let copy = copy_example(&sb);
    let socket = sb.root.join("run/ex.sock");
    let text: String = example_text()
        .lines()
        .map(|line| {
            let body = line.strip_prefix("# ").unwrap_or(line);
            let is_table = body.starts_with('[') && body.trim_end().ends_with(']');
            let is_setting = is_table
                || body
                    .split_once(" = ")
                    .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            if line.starts_with("# socket = ") {
                format!("socket = {:?}", socket.display().to_string())
            } else if line.starts_with("# ") && is_setting {
                body.to_string()
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&copy, &text).unwrap();
    let cfg = config::load(&copy).unwrap_or_else(|e| panic!("{e}\n---\n{text}"));
    assert_eq!(cfg.socket, socket);
    let nb = &cfg.notebooks[0];
    assert_eq!(nb.author_name.as_deref(), Some("..."));
    assert!(
        nb.sync.is_some(),
        "the [notebook.sync] example was not enabled:\n{text}"
    );
}

#[test]
fn example_works_out_of_the_box() {
    // What the README's first command does: run the daemon on the example.
    // The daemon runs from another folder; the demo notebook must still be
    // created next to the config file. No --socket: the default path under
    // XDG_RUNTIME_DIR is used, as for a user.
    let mut sb = Sandbox::new();
    let copy = copy_example(&sb);
    sb.config = copy.clone();
    sb.socket = sb.root.join("run/gitlockd.sock");
    let demo = copy.parent().unwrap().join("demo-notebook");
    assert!(!demo.exists());

    let elsewhere = sb.root.join("home");
    let mut daemon = sb.spawn_in(Some(&elsewhere), &[]);
    daemon.wait_ready(&sb);
    // The socket answers while notebooks still open; the status shows when
    // the demo notebook is up.
    support::wait_for(Duration::from_secs(20), "demo notebook started", || {
        let resp = sb.client().request("status", serde_json::json!({}));
        let up = resp["notebooks"]
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n["name"] == "demo"));
        up.then_some(())
    });
    assert!(
        demo.join(".git").is_dir(),
        "demo-notebook was not created as a git repo"
    );
    let repo = Repo {
        path: demo.clone(),
        env: sb.env.clone(),
    };
    assert_eq!(repo.git(&["rev-parse", "--is-inside-work-tree"]), "true");

    // A file written there is committed after the example's own debounce.
    let debounce = config::load(&copy).unwrap().notebooks[0].debounce;
    assert_eq!(debounce, Duration::from_millis(500));
    std::fs::write(demo.join("hello.md"), "# Hello\n").unwrap();
    support::wait_for(
        debounce + Duration::from_secs(15),
        "hello.md committed",
        || (repo.blob("hello.md").as_deref() == Some("# Hello\n")).then_some(()),
    );
    let subject = repo.git(&["log", "-1", "--format=%s"]);
    assert!(subject.starts_with("gitlockd: "), "subject {subject:?}");
    assert_eq!(repo.status_porcelain(), "");

    // The CLI finds the daemon through the same config (no --socket).
    let log = sb
        .command(&["--config", copy.to_str().unwrap(), "log", "demo", "-n", "1"])
        .current_dir(&elsewhere)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        log.status.success(),
        "{}",
        String::from_utf8_lossy(&log.stderr)
    );
    assert!(String::from_utf8_lossy(&log.stdout).contains("hello.md"));

    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(Duration::from_secs(40)), Some(0));
    assert!(!Path::new(&sb.socket).exists());
    assert!(!elsewhere.join("demo-notebook").exists());
}
