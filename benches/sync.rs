//! Sync latency (issue 6): a save on notebook A until the change is in
//! notebook B's work tree, through a local bare remote and the real daemon.
//!
//! The pull interval is a schedule, not a cost, so it is taken out two ways:
//! (1) A's save → on the remote (debounce + commit + push), then B's
//! `sync` request → in B's work tree (fetch + fast-forward); (2) with B
//! pulling every second, the end-to-end time minus that interval's phase is
//! bounded by the sum of (1).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{env_usize, fmt_d, print_header, print_table, Client, Row, Sandbox, Stats};
use serde_json::json;

fn clone(sb: &Sandbox, url: &Path, name: &str) -> PathBuf {
    let path = sb.root.join("books").join(name);
    let status = Command::new("git")
        .args(["clone", "-q", url.to_str().unwrap(), path.to_str().unwrap()])
        .envs(sb.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .status()
        .unwrap();
    assert!(status.success());
    path
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) -> Instant {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        if cond() {
            return Instant::now();
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn main() {
    print_header("sync: save on A → change in B's work tree (issue 6)");
    let saves = env_usize("GITLOCKD_BENCH_SYNC_SAVES", 10);
    let sb = Sandbox::new();
    let remote = sb.root.join("books/remote.git");
    let git = |dir: &PathBuf, args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .envs(sb.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    std::fs::create_dir_all(&remote).unwrap();
    git(&remote, &["init", "-q", "--bare", "-b", "main"]);
    let seed = sb.root.join("books/seed");
    std::fs::create_dir_all(&seed).unwrap();
    git(&seed, &["init", "-q", "-b", "main"]);
    std::fs::write(seed.join("README.md"), "shared\n").unwrap();
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "seed"]);
    git(&seed, &["push", "-q", remote.to_str().unwrap(), "main"]);
    let a = clone(&sb, &remote, "a");
    let b = clone(&sb, &remote, "b");
    sb.write_config(
        "debounce = \"100ms\"",
        &[
            (
                "a",
                &a,
                "[notebook.sync]\npush_delay = \"0ms\"\npull_interval = \"1h\"\n",
            ),
            (
                "b",
                &b,
                "[notebook.sync]\npush_delay = \"0ms\"\npull_interval = \"1s\"\n",
            ),
        ],
    );
    let _daemon = sb.start_daemon();
    let mut client = Client::connect(&sb.socket);

    let (mut to_remote, mut to_b, mut decomposed, mut periodic) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..saves {
        // (1) decomposed: A → remote, then B's on-demand sync.
        let name = format!("note-{i}.md");
        let t0 = Instant::now();
        std::fs::write(a.join(&name), format!("save {i}\n")).unwrap();
        let on_remote = wait_until("the push", || {
            git(&remote, &["ls-tree", "--name-only", "main"]).contains(&name)
        });
        let asked = Instant::now();
        client.ok(json!({"cmd": "sync", "notebook": "b"}));
        let in_b = wait_until("B's work tree", || b.join(&name).exists());
        to_remote.push(on_remote - t0);
        to_b.push(in_b - asked);
        decomposed.push((on_remote - t0) + (in_b - asked));
        // (2) periodic: B pulls every second on its own.
        let name = format!("pulled-{i}.md");
        let t0 = Instant::now();
        std::fs::write(a.join(&name), format!("save {i}\n")).unwrap();
        let in_b = wait_until("B's periodic pull", || b.join(&name).exists());
        periodic.push(in_b - t0);
    }
    let (r, bb, d, p) = (
        Stats::new(to_remote),
        Stats::new(to_b),
        Stats::new(decomposed),
        Stats::new(periodic),
    );
    let rows = vec![
        Row::new(
            "save on A → in B's work tree, pull interval excluded: median",
            fmt_d(d.median()),
            format!("p95 {}", fmt_d(d.pct(95.0))),
            "—",
            None,
        ),
        Row::new(
            "  A: save → on the remote (debounce 100 ms + commit + push)",
            fmt_d(r.median()),
            format!("p95 {}", fmt_d(r.pct(95.0))),
            "—",
            None,
        ),
        Row::new(
            "  B: `sync` request → in the work tree (fetch + fast-forward)",
            fmt_d(bb.median()),
            format!("p95 {}", fmt_d(bb.pct(95.0))),
            "—",
            None,
        ),
        Row::new(
            "save on A → in B with B pulling every 1 s: median / max",
            format!("{} / {}", fmt_d(p.median()), fmt_d(p.max())),
            "includes up to 1 s waiting for B's next pull".into(),
            "—",
            None,
        ),
    ];
    print_table("sync over a local bare remote", &rows);
}
