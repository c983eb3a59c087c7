//! Figures, not a timed test: one-file auto-commit in a 100,000-file
//! repository against `git add F && git commit -q` on the same repository.
//!
//! `cargo test --release --test git_perf -- --ignored --nocapture`
//! (`GITLOCKD_PERF_FILES` changes the repository size).

mod git_util;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use git_util::*;
use gitlockd::git::{AutoCommitOptions, GitManager};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
#[ignore = "benchmark: prints figures"]
fn one_file_auto_commit_in_a_big_repo_vs_git_cli() {
    let files: usize = std::env::var("GITLOCKD_PERF_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempdir();
    let root = dir.path();
    let t = Instant::now();
    for i in 0..files {
        let d = root.join(format!("d{:03}", i % 1000));
        if i < 1000 {
            std::fs::create_dir(&d).unwrap();
        }
        std::fs::write(d.join(format!("f{i}.md")), format!("file {i}\n")).unwrap();
    }
    git(root, &["init", "-q", "-b", "main"]);
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "base"]);
    println!("setup: {files} files in {:?}", t.elapsed());

    let gm = GitManager::new(root).unwrap();
    let opts = AutoCommitOptions {
        notebook: "perf".into(),
        ..AutoCommitOptions::default()
    };
    let rounds = 7;
    let (mut ours, mut ours_settled, mut cli) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // Just written, as `gitlockd commit` right after a save sees it.
        let rel = write(root, "d007/f7.md", &format!("ours {round}\n"));
        let t = Instant::now();
        let out = gm
            .auto_commit_on_change(std::slice::from_ref(&rel), &opts)
            .unwrap();
        ours.push(t.elapsed());
        assert!(out.commit.is_some());

        // Written a debounce earlier, as the daemon sees it.
        let rel = write(root, "d008/f8.md", &format!("settled {round}\n"));
        std::thread::sleep(Duration::from_millis(20));
        let t = Instant::now();
        let out = gm
            .auto_commit_on_change(&[PathBuf::from(&rel)], &opts)
            .unwrap();
        ours_settled.push(t.elapsed());
        assert!(out.commit.is_some());

        write(root, "d009/f9.md", &format!("cli {round}\n"));
        std::thread::sleep(Duration::from_millis(20));
        let t = Instant::now();
        git(root, &["add", "d009/f9.md"]);
        git(root, &["commit", "-q", "-m", "x"]);
        cli.push(t.elapsed());
    }
    assert_status_clean(root);
    let (ours, settled, cli) = (median(ours), median(ours_settled), median(cli));
    println!("auto_commit_on_change, file just written:  {ours:?} (median of {rounds})");
    println!("auto_commit_on_change, file written 20ms before: {settled:?}");
    println!("git add F && git commit -q -m x:            {cli:?}");
    println!(
        "ratio (settled / cli): {:.2}",
        settled.as_secs_f64() / cli.as_secs_f64()
    );
}
