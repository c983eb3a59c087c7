//! Stress: several `gitlockd lock -- CMD` client processes loop over a
//! critical section while files are written into the notebook. Proves mutual
//! exclusion between clients and that no auto-commit lands inside a hold.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{setup, wait_for};

const CLIENTS: usize = 4;
const ROUNDS: usize = 15;

#[test]
fn clients_exclude_each_other_and_auto_commits() {
    let (sb, repos, _d) = setup(&["nb"]);
    let repo = &repos[0];

    let work = sb.root.join("tmp");
    let marker = work.join("inside"); // outside the notebook: never committed
    let failures = work.join("failures");
    let done = work.join("done");
    // The critical section: the marker must be absent (mkdir is atomic), HEAD
    // must not move while we hold the lock, then the marker goes.
    let section = format!(
        r#"mkdir "{marker}" 2>/dev/null || echo "overlap: marker present (client $C)" >> "{failures}"
h1=$(git -C "{nb}" rev-parse HEAD)
sleep 0.05
h2=$(git -C "{nb}" rev-parse HEAD)
[ "$h1" = "$h2" ] || echo "commit inside a hold: $h1 -> $h2 (client $C)" >> "{failures}"
rmdir "{marker}" || echo "marker vanished (client $C)" >> "{failures}"
echo "$C" >> "{done}""#,
        marker = marker.display(),
        failures = failures.display(),
        done = done.display(),
        nb = repo.path.display(),
    );
    let bin = support::bin();
    let socket = sb.socket.display().to_string();
    // Each client process loops: every round is a fresh `gitlockd lock` process.
    let client_loop = format!(
        r#"i=0; while [ $i -lt {ROUNDS} ]; do
  "{bin}" --socket "{socket}" lock nb --timeout 20s -- sh -c '{section}' || exit 10
  i=$((i+1))
done"#,
        bin = bin.display(),
        section = section.replace('\'', r"'\''"),
    );

    let before = repo.head().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let stop = stop.clone();
        let written = written.clone();
        let path = repo.path.clone();
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let dir = path.join(format!("w{}", n % 3));
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(format!("f{}.txt", n % 7)), format!("write {n}\n"))
                    .unwrap();
                written.store(n, Ordering::SeqCst);
                // Pacing (the workload), not synchronisation: quiet gaps let
                // the 100 ms debounce fire so auto-commits compete for the lock.
                std::thread::sleep(Duration::from_millis(130));
            }
        })
    };

    let t = Instant::now();
    let mut children: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let mut cmd = std::process::Command::new("sh");
            cmd.arg("-c").arg(&client_loop).env_clear();
            if let Ok(path) = std::env::var("PATH") {
                cmd.env("PATH", path);
            }
            for (k, v) in &sb.env {
                cmd.env(k, v);
            }
            cmd.env("C", i.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let end = Instant::now() + Duration::from_secs(240);
    for (i, child) in children.iter_mut().enumerate() {
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < end, "client {i} did not finish");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(status.success(), "client {i} failed: {status:?}\n{err}");
    }
    let elapsed = t.elapsed();
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();

    let fail = std::fs::read_to_string(&failures).unwrap_or_default();
    assert!(fail.is_empty(), "critical section violated:\n{fail}");
    let rounds = std::fs::read_to_string(&done).unwrap().lines().count();
    assert_eq!(rounds, CLIENTS * ROUNDS, "every hold ran once");
    assert!(!marker.exists());

    // Auto-commits really competed: commits landed during the run, between holds.
    let n = written.load(Ordering::SeqCst);
    assert!(n >= 5, "the writer wrote only {n} times in {elapsed:?}");
    let commits: usize = repo
        .git(&["rev-list", "--count", &format!("{before}..HEAD")])
        .parse()
        .unwrap();
    assert!(commits >= 1, "no auto-commit during the run ({n} writes)");

    // At the end everything is committed and the repository is sound.
    let last = format!("write {n}\n");
    let rel = format!("w{}/f{}.txt", n % 3, n % 7);
    repo.wait_committed(&rel, &last);
    wait_for(Duration::from_secs(20), "a clean work tree", || {
        repo.status_porcelain().is_empty().then_some(())
    });
    let mut c = sb.client();
    let lock = c.status_of("nb")["lock"].clone();
    assert_eq!(lock["waiters"], json!(0), "{lock}");
    repo.assert_fsck_clean();
    eprintln!(
        "stress: {} holds by {CLIENTS} client processes and {commits} auto-commits of {n} writes in {elapsed:?}",
        CLIENTS * ROUNDS
    );
}
