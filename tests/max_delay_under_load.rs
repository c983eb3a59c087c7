//! `max_delay` bounds how long a change waits even for a file rewritten
//! every millisecond or two (a log, a database, a build output): such a file
//! is always changing while a round stages it, and gitlockd used to put it
//! back for a recheck round after round, postponing the commit by seconds.
//! Past `max_delay`, the content read is committed (it is a real state of
//! the file) and the next change makes the next commit.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

/// max_delay of the notebook under test.
const MAX_DELAY: Duration = Duration::from_secs(1);
/// Room for a loaded machine on top of max_delay: a round takes time, and
/// the daemon shares two cores with the writer and other tests.
const MARGIN: Duration = Duration::from_secs(3);
/// Commits to see while the writer goes on. Measured on two loaded cores:
/// gaps of 1.0–2.1 s (2 s when a round reads the state HEAD already has);
/// before the fix, the longest of ten gaps was 4.2–10 s.
const COMMITS: usize = 10;

/// The writer's n-th version of the file: a line long enough that a torn
/// read would show.
fn version(n: u64) -> String {
    format!("version {n:08} {}\n", "x".repeat(200))
}

#[test]
fn commits_keep_coming_within_max_delay_while_a_file_is_rewritten_every_few_ms() {
    let sb = Sandbox::new();
    let nb = sb.repo("nb");
    // A one-hour debounce never expires while the file is written: every
    // commit during the writing is max_delay's doing.
    sb.write_config(
        "",
        &[("nb", &nb.path, "debounce = \"1h\"\nmax_delay = \"1s\"")],
    );
    let mut d = sb.start_serving(&["nb"]);

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let path = nb.path.join("log.txt");
    let writer = {
        let (stop, written) = (stop.clone(), written.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                // Rewritten in place (truncate, write), like most programs save.
                std::fs::write(&path, version(n)).unwrap();
                written.store(n, Ordering::SeqCst);
                n += 1;
                // The writer's pace (1–2 ms between rewrites), not a sync.
                std::thread::sleep(Duration::from_millis(1 + n % 2));
            }
        })
    };

    let limit = MAX_DELAY + MARGIN;
    let mut gaps = Vec::new();
    let mut since = Instant::now();
    let mut last = nb.head();
    for i in 0..COMMITS {
        let what = format!(
            "commit {} of {COMMITS} within max_delay + margin ({limit:?}) while log.txt is rewritten every 1-2 ms (gaps so far {gaps:?})",
            i + 1
        );
        let head = wait_for(limit, &what, || {
            let h = nb.head();
            (h.is_some() && h != last).then_some(h)
        });
        gaps.push(since.elapsed());
        since = Instant::now();
        last = head;
    }
    eprintln!("gaps between commits while writing: {gaps:?}");
    assert!(
        written.load(Ordering::SeqCst) > 100,
        "the writer kept writing meanwhile"
    );
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();

    // The last version is committed max_delay after the writing stopped
    // (the debounce is an hour), and nothing is lost.
    let last_version = std::fs::read_to_string(nb.path.join("log.txt")).unwrap();
    wait_for(limit, "the last version of log.txt committed", || {
        (nb.blob("log.txt").as_deref() == Some(last_version.as_str())).then_some(())
    });

    // Every committed state of log.txt is one the file really had: empty
    // (just truncated) or a whole version, never a mix.
    let revs = nb.git(&["log", "--format=%H", "--", "log.txt"]);
    for rev in revs.lines() {
        let content = nb.git_output(&["show", &format!("{rev}:log.txt")]).stdout;
        let content = String::from_utf8(content).unwrap();
        let real = content.is_empty()
            || content
                .strip_prefix("version ")
                .and_then(|rest| rest.get(..8))
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| content == version(n));
        assert!(
            real,
            "commit {rev} holds a state log.txt never had: {content:?}"
        );
    }

    d.stop();
    nb.assert_fsck_clean();
    assert_eq!(nb.status_porcelain(), "", "git status after the stop");
}

/// Through the user's git (here: a pre-commit hook), a file caught changing
/// is committed as git read it; what changed after is a new change with a
/// clock of its own. Keeping the old clock made every round overdue and
/// committed the file back to back for as long as it was written.
#[test]
fn through_git_a_file_under_constant_writes_is_committed_once_per_max_delay() {
    let sb = Sandbox::new();
    let nb = sb.repo("nb");
    let hook = nb.path.join(".git/hooks/pre-commit");
    std::fs::write(&hook, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    sb.write_config(
        "",
        &[("nb", &nb.path, "debounce = \"1h\"\nmax_delay = \"1s\"")],
    );
    let mut d = sb.start_serving(&["nb"]);

    let stop = Arc::new(AtomicBool::new(false));
    let path = nb.path.join("log.txt");
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                std::fs::write(&path, version(n)).unwrap();
                n += 1;
                // The writer's pace, not a sync.
                std::thread::sleep(Duration::from_millis(1 + n % 2));
            }
        })
    };

    // Five commits past the first, each timed from the one before.
    let count = |nb: &Repo| {
        nb.git(&["rev-list", "--count", "--all"])
            .trim()
            .parse::<u32>()
            .unwrap()
    };
    let start = count(&nb);
    wait_for(MAX_DELAY + MARGIN, "the first commit of log.txt", || {
        (count(&nb) > start).then_some(())
    });
    let first = count(&nb);
    let began = Instant::now();
    wait_for(
        5 * (MAX_DELAY + MARGIN),
        "five more commits of log.txt",
        || (count(&nb) >= first + 5).then_some(()),
    );
    let took = began.elapsed();
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let made = count(&nb) - first;
    // Back to back, five git commits take well under a second; one per
    // max_delay, at least about two and a half seconds.
    assert!(
        took >= MAX_DELAY * 5 / 2,
        "{made} commits in {took:?}: committed back to back, not once per max_delay (1 s)"
    );
    d.stop();
    nb.assert_fsck_clean();
}
