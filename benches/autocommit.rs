//! Auto-commit of one changed file in a repository of many tracked files
//! (issue 2): `GitManager::auto_commit_on_change` in-process against
//! `git add F && git commit -q -m x` on the same repository, interleaved in
//! the same run. Target: ours ≤ ½ of the CLI's time.
//!
//!   cargo bench --bench autocommit
//!   GITLOCKD_BENCH_FILES=10000 GITLOCKD_BENCH_COMMITS=10 cargo bench --bench autocommit

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use gitlockd::git::{AutoCommitOptions, GitManager};

fn main() {
    print_header("auto-commit of one changed file (issue 2)");
    let files = env_usize("GITLOCKD_BENCH_FILES", 100_000);
    let commits = env_usize("GITLOCKD_BENCH_COMMITS", 15);
    let sb = Sandbox::new();
    sb.enter();
    let repo = sb.big_repo("big", files);
    let commits_before = repo.count();
    let gm = GitManager::new(&repo.path).unwrap();
    let opts = AutoCommitOptions::default();
    let n_dirs = files.div_ceil(100).max(1);
    // Distinct files for each side and iteration, spread over the tree.
    let file_for = |i: usize| -> String {
        let k = (i * 7919) % files;
        format!("d{:04}/f{:02}.md", k / 100, k % 100)
    };
    let _ = n_dirs;

    let ours_once = |rel: &str, tag: &str| -> Duration {
        repo.write(rel, &format!("edited {tag}\n"));
        let_mtime_settle();
        let t = Instant::now();
        let out = gm
            .auto_commit_on_change(&[PathBuf::from(rel)], &opts)
            .unwrap();
        let d = t.elapsed();
        assert!(out.commit.is_some(), "no commit for {rel}: {out:?}");
        assert_eq!(out.paths, vec![PathBuf::from(rel)]);
        d
    };
    let git_once = |rel: &str, tag: &str| -> Duration {
        repo.write(rel, &format!("edited {tag}\n"));
        let_mtime_settle();
        let t = Instant::now();
        assert!(repo.git_quiet(&["add", rel]));
        assert!(repo.git_quiet(&["commit", "-q", "-m", "x"]));
        t.elapsed()
    };

    // Warm-up (page cache, libgit2's caches): not counted.
    ours_once(&file_for(1), "warm-ours");
    git_once(&file_for(2), "warm-git");

    let mut ours = Vec::new();
    let mut cli = Vec::new();
    for i in 0..commits {
        // Alternate who goes first, so neither side always follows the other.
        let (a, b) = (file_for(10 + 2 * i), file_for(11 + 2 * i));
        if i % 2 == 0 {
            ours.push(ours_once(&a, &format!("o{i}")));
            cli.push(git_once(&b, &format!("g{i}")));
        } else {
            cli.push(git_once(&b, &format!("g{i}")));
            ours.push(ours_once(&a, &format!("o{i}")));
        }
        println!(
            "   {:>2}: ours {:>9}  git CLI {:>9}  (load {})",
            i + 1,
            fmt_d(*ours.last().unwrap()),
            fmt_d(*cli.last().unwrap()),
            load1()
        );
    }
    // The same, without waiting for the file's mtime to age: what a commit
    // right after the write pays (the stager waits for the clock to tick).
    let mut fresh = Vec::new();
    for i in 0..commits.min(5) {
        let rel = file_for(1000 + i);
        repo.write(&rel, &format!("fresh {i}\n"));
        let t = Instant::now();
        let out = gm.auto_commit_on_change(&[PathBuf::from(&rel)], &opts).unwrap();
        fresh.push(t.elapsed());
        assert!(out.commit.is_some());
    }

    // Where the time goes: libgit2 reading and writing this index.
    let mut idx = Vec::new();
    {
        let r = git2::Repository::open(&repo.path).unwrap();
        let mut index = r.index().unwrap();
        for _ in 0..5 {
            let t = Instant::now();
            index.read(true).unwrap();
            let read = t.elapsed();
            index.write().unwrap();
            idx.push((read, t.elapsed() - read));
        }
    }
    let idx_read = Stats::new(idx.iter().map(|x| x.0).collect());
    let idx_write = Stats::new(idx.iter().map(|x| x.1).collect());
    let index_size = std::fs::metadata(repo.path.join(".git/index")).unwrap().len();

    assert!(repo.status_clean(), "work tree not clean after the bench");
    let expected = commits_before + 2 + 2 * commits + fresh.len();
    assert_eq!(repo.count(), expected, "commit count");

    let o = Stats::new(ours);
    let g = Stats::new(cli);
    let f = Stats::new(fresh);
    let ratio = o.median().as_secs_f64() / g.median().as_secs_f64();
    let rows = vec![
        Row::new(
            &format!("auto-commit 1 file, {files} tracked: median"),
            format!("{} (min {}, max {})", fmt_d(o.median()), fmt_d(o.min()), fmt_d(o.max())),
            format!(
                "git add F && git commit -q -m x: {} (min {}, max {})",
                fmt_d(g.median()),
                fmt_d(g.min()),
                fmt_d(g.max())
            ),
            "≤ ½ of the CLI",
            Some(ratio <= 0.5),
        ),
        Row::new("  ratio ours / CLI (medians)", format!("{ratio:.2}"), String::new(), "≤ 0.50", Some(ratio <= 0.5)),
        Row::new(
            "  same, committed right after the write",
            format!("{} (min {})", fmt_d(f.median()), fmt_d(f.min())),
            "(stager waits for the file clock to tick)".to_string(),
            "—",
            None,
        ),
        Row::new(
            &format!("  libgit2 index read / write ({:.1} MiB)", index_size as f64 / 1048576.0),
            format!("{} / {}", fmt_d(idx_read.median()), fmt_d(idx_write.median())),
            String::new(),
            "—",
            None,
        ),
    ];
    print_table("auto-commit vs git CLI", &rows);
}
