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

/// utime + stime of this process (all threads) so far.
fn self_cpu() -> Duration {
    proc_cpu_time(std::process::id())
}

/// A field of this process's /proc status, in kB.
fn self_status_kb(field: &str) -> u64 {
    proc_status_kb(std::process::id(), field)
}

/// Gives freed heap back to the system, as the daemon does after a round.
fn trim() {
    // SAFETY: malloc_trim only releases free heap pages.
    unsafe { libc::malloc_trim(0) };
}

/// CPU time of reaped children so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Makes the index's stat data of every tracked file stale without changing
/// content (what a copy, a restore or another tool's checkout does): each
/// file gets a new mtime, `stamp` seconds after an old base.
fn make_stat_stale(repo: &Repo, stamp: i64) {
    let list = repo.git(&["ls-files", "-z"]);
    for rel in list.split('\0').filter(|r| !r.is_empty()) {
        let path =
            std::ffi::CString::new(repo.path.join(rel).into_os_string().into_encoded_bytes())
                .unwrap();
        let t = libc::timespec {
            tv_sec: 1_600_000_000 + stamp,
            tv_nsec: 0,
        };
        // SAFETY: a valid NUL-terminated path and two valid timespecs.
        let rc = unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), [t, t].as_ptr(), 0) };
        assert_eq!(rc, 0, "utimensat {rel}");
    }
}

/// Start-up on a notebook whose index stat data is stale (issue 11): the
/// start-up scan (`pending_changes`, run by the daemon before its first
/// commit), twice as two starts, against `git status` on the same tree made
/// stale the same way (git writes the refreshed index back too).
fn startup(repo: &Repo, files: usize) {
    let opts = AutoCommitOptions::default();
    let timed = |f: &mut dyn FnMut()| -> (Duration, Duration, Duration) {
        let (cpu, kids) = (self_cpu(), children_cpu());
        let t = Instant::now();
        f();
        (t.elapsed(), self_cpu() - cpu, children_cpu() - kids)
    };
    make_stat_stale(repo, 1);
    let git1 = timed(&mut || assert!(repo.git_quiet(&["status", "--porcelain"])));
    let git2 = timed(&mut || assert!(repo.git_quiet(&["status", "--porcelain"])));
    make_stat_stale(repo, 2);
    let rss_before = self_status_kb("VmRSS");
    let mut pending = Vec::new();
    let ours1 = timed(&mut || {
        let gm = GitManager::new(&repo.path).unwrap();
        pending = gm.pending_changes(&opts).unwrap();
    });
    assert!(
        pending.is_empty(),
        "{} pending after the scan",
        pending.len()
    );
    let rss_after = self_status_kb("VmRSS");
    // What keeping the index costs at rest (the daemon trims after a round).
    let kept = GitManager::new(&repo.path).unwrap();
    assert!(kept.pending_changes(&opts).unwrap().is_empty());
    trim();
    let rss_kept = self_status_kb("VmRSS");
    drop(kept);
    trim();
    let rss_dropped = self_status_kb("VmRSS");
    // A new manager: nothing kept in memory, like a restarted daemon.
    let ours2 = timed(&mut || {
        let gm = GitManager::new(&repo.path).unwrap();
        pending = gm.pending_changes(&opts).unwrap();
    });
    assert!(pending.is_empty());
    assert!(repo.status_clean(), "not clean after the start-up scans");
    let rows = vec![
        Row::new(
            &format!("start-up scan, {files} files, stale stat data: wall / CPU"),
            format!("{} / {}", fmt_d(ours1.0), fmt_d(ours1.1)),
            format!("git status: {} / {} CPU", fmt_d(git1.0), fmt_d(git1.2)),
            "CPU ≤ git status",
            Some(ours1.1 <= git1.2),
        ),
        Row::new(
            "  second start (stat data written back)",
            format!("{} / {}", fmt_d(ours2.0), fmt_d(ours2.1)),
            format!(
                "git status again: {} / {} CPU",
                fmt_d(git2.0),
                fmt_d(git2.2)
            ),
            "≤ 0.5 s",
            Some(ours2.0 <= Duration::from_millis(500)),
        ),
        Row::new(
            "  bench process RSS around the first scan",
            format!(
                "{:.1} → {:.1} MiB",
                rss_before as f64 / 1024.0,
                rss_after as f64 / 1024.0
            ),
            String::new(),
            "—",
            None,
        ),
    ];
    let mut rows = rows;
    rows.push(Row::new(
        "  RSS at rest (malloc_trim), index kept / dropped",
        format!(
            "{:.1} / {:.1} MiB",
            rss_kept as f64 / 1024.0,
            rss_dropped as f64 / 1024.0
        ),
        String::new(),
        "—",
        None,
    ));
    print_table("start-up with stale stat data", &rows);
}

fn main() {
    print_header("auto-commit of one changed file (issue 2)");
    let files = env_usize("GITLOCKD_BENCH_FILES", 100_000);
    let commits = env_usize("GITLOCKD_BENCH_COMMITS", 15);
    let sb = Sandbox::new();
    sb.enter();
    let rss_start = self_status_kb("VmRSS");
    let repo = sb.big_repo("big", files);
    if section_enabled("startup") {
        startup(&repo, files);
    }
    if !section_enabled("commit") {
        return;
    }
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

    // Content unique to this run, so a reused sandbox still sees changes.
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let ours_once = |rel: &str, tag: &str| -> Duration {
        repo.write(rel, &format!("edited {tag} {nonce}\n"));
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
        repo.write(rel, &format!("edited {tag} {nonce}\n"));
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
        repo.write(&rel, &format!("fresh {i} {nonce}\n"));
        let t = Instant::now();
        let out = gm
            .auto_commit_on_change(&[PathBuf::from(&rel)], &opts)
            .unwrap();
        fresh.push(t.elapsed());
        assert!(out.commit.is_some());
    }

    // Ours back to back, settled, with no CLI commit in between: what the
    // daemon pays in steady state (the index kept since our last write).
    let mut alone = Vec::new();
    let mut alone_cpu = Duration::ZERO;
    for i in 0..commits.min(8) {
        let cpu = self_cpu();
        alone.push(ours_once(&file_for(2000 + i), &format!("a{i}")));
        alone_cpu += self_cpu() - cpu;
    }
    let alone_cpu = alone_cpu / alone.len().max(1) as u32;
    let rss_kept = self_status_kb("VmRSS");
    println!(
        "   fresh: {:?}\n   back to back: {:?}",
        fresh.iter().map(|d| fmt_d(*d)).collect::<Vec<_>>(),
        alone.iter().map(|d| fmt_d(*d)).collect::<Vec<_>>()
    );

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
    let index_size = std::fs::metadata(repo.path.join(".git/index"))
        .unwrap()
        .len();

    assert!(repo.status_clean(), "work tree not clean after the bench");
    let expected = commits_before + 2 + 2 * commits + fresh.len() + alone.len();
    assert_eq!(repo.count(), expected, "commit count");

    // Many new files in one batch (what the daemon commits after a burst):
    // the watcher hands over every path; the CLI reference adds the folder.
    let burst = env_usize("GITLOCKD_BENCH_BURST", 2000);
    let make_burst = |dir: &str| -> Vec<PathBuf> {
        (0..burst)
            .map(|i| {
                let rel = format!("{dir}/n{i:05}.md");
                repo.write(&rel, &format!("burst {i}\n"));
                PathBuf::from(rel)
            })
            .collect()
    };
    // Fresh folder names, so a reused sandbox gets new files too.
    let tag = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ours_paths = make_burst(&format!("burst-ours-{tag}"));
    let git_dir = format!("burst-git-{tag}");
    make_burst(&git_dir);
    let_mtime_settle();
    let t = Instant::now();
    let out = gm.auto_commit_on_change(&ours_paths, &opts).unwrap();
    let burst_ours = t.elapsed();
    assert_eq!(out.paths.len(), burst, "{:?}", out.recheck);
    let t = Instant::now();
    assert!(repo.git_quiet(&["add", &git_dir]));
    assert!(repo.git_quiet(&["commit", "-q", "-m", "x"]));
    let burst_git = t.elapsed();
    assert!(repo.status_clean(), "work tree not clean after the burst");

    // The git path (issue 9): a hook makes every commit go through `git add`
    // + `git write-tree` + `git commit --only`, on the same repository.
    let hook = repo.path.join(".git/hooks/post-commit");
    std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
    std::fs::write(&hook, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut via_git = Vec::new();
    for i in 0..commits.min(8) {
        let rel = file_for(3000 + i);
        repo.write(&rel, &format!("via git {i} {nonce}\n"));
        let_mtime_settle();
        let t = Instant::now();
        let out = gm
            .auto_commit_on_change(&[PathBuf::from(&rel)], &opts)
            .unwrap();
        via_git.push(t.elapsed());
        assert!(
            out.commit.is_some() && !out.git_features.is_empty(),
            "{out:?}"
        );
    }
    std::fs::remove_file(&hook).unwrap();
    assert!(
        repo.status_clean(),
        "work tree not clean after the git path"
    );
    let vg = Stats::new(via_git);

    let o = Stats::new(ours);
    let g = Stats::new(cli);
    let f = Stats::new(fresh);
    let al = Stats::new(alone);
    let ratio = o.median().as_secs_f64() / g.median().as_secs_f64();
    let mut rows = vec![
        Row::new(
            &format!("auto-commit 1 file, {files} tracked: median"),
            format!(
                "{} (min {}, max {})",
                fmt_d(o.median()),
                fmt_d(o.min()),
                fmt_d(o.max())
            ),
            format!(
                "git add F && git commit -q -m x: {} (min {}, max {})",
                fmt_d(g.median()),
                fmt_d(g.min()),
                fmt_d(g.max())
            ),
            "≤ ½ of the CLI",
            Some(ratio <= 0.5),
        ),
        Row::new(
            "  ratio ours / CLI (medians)",
            format!("{ratio:.2}"),
            String::new(),
            "≤ 0.50",
            Some(ratio <= 0.5),
        ),
        Row::new(
            "  ours back to back (no CLI commit in between)",
            format!("{} (min {})", fmt_d(al.median()), fmt_d(al.min())),
            format!(
                "ratio to the CLI median {:.2}",
                al.median().as_secs_f64() / g.median().as_secs_f64()
            ),
            "—",
            None,
        ),
        Row::new(
            "  CPU per back-to-back commit (this process)",
            fmt_d(alone_cpu),
            String::new(),
            "≤ 100 ms CPU",
            Some(alone_cpu <= Duration::from_millis(100)),
        ),
        Row::new(
            "  back to back ≤ 50 ms (target of issue 11)",
            fmt_d(al.median()),
            String::new(),
            "≤ 50 ms",
            Some(al.median() <= Duration::from_millis(50)),
        ),
        Row::new(
            "  bench process RSS with the index kept",
            format!("{:.1} MiB", rss_kept as f64 / 1024.0),
            format!("at start {:.1} MiB", rss_start as f64 / 1024.0),
            "—",
            None,
        ),
        Row::new(
            "  same, committed right after the write",
            format!("{} (min {})", fmt_d(f.median()), fmt_d(f.min())),
            "(stager waits for the file clock to tick)".to_string(),
            "—",
            None,
        ),
        Row::new(
            &format!(
                "  libgit2 index read / write ({:.1} MiB)",
                index_size as f64 / 1048576.0
            ),
            format!(
                "{} / {}",
                fmt_d(idx_read.median()),
                fmt_d(idx_write.median())
            ),
            String::new(),
            "—",
            None,
        ),
    ];
    rows.push(Row::new(
        &format!("auto-commit of {burst} new files (one batch), {files} tracked"),
        fmt_d(burst_ours),
        format!("git add DIR && git commit -q -m x: {}", fmt_d(burst_git)),
        "—",
        None,
    ));
    rows.push(Row::new(
        &format!("auto-commit 1 file through git (a hook set), {files} tracked"),
        format!("{} (min {})", fmt_d(vg.median()), fmt_d(vg.min())),
        format!(
            "ratio to the CLI median {:.2}",
            vg.median().as_secs_f64() / g.median().as_secs_f64()
        ),
        "—",
        None,
    ));
    print_table("auto-commit vs git CLI", &rows);
}
