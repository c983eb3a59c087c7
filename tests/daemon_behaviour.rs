//! The daemon's auto-commit behaviour (issue 3, interface.md section 5),
//! proven against the real binary, real repositories, real inotify and the
//! real socket. Every wait is a bounded poll; "nothing happens" is a bounded
//! observation window.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{
    committed, holds_for, no_skip, one, one_with_base, pending, status, wait_for, Repo, Sandbox,
    COMMIT, QUIET,
};

fn absent(repo: &Repo, rel: &str) {
    wait_for(COMMIT, &format!("deletion of {rel} committed"), || {
        (repo.head().is_some() && repo.blob(rel).is_none()).then_some(())
    });
}

fn head_stays(repo: &Repo, why: &str) {
    let before = repo.head();
    holds_for(QUIET, &format!("HEAD to stay at {before:?} {why}"), || {
        repo.head() == before
    });
}

fn count_stays(repo: &Repo, n: usize, why: &str) {
    holds_for(QUIET, &format!("{n} commits {why}"), || repo.count() == n);
    assert_eq!(repo.count(), n, "{why}");
}

/// Every check that must hold after a test that writes.
fn assert_sound(repo: &Repo) {
    repo.assert_fsck_clean();
    repo.assert_no_empty_commits();
    assert!(
        !repo.path.join(".git/index.lock").exists(),
        "index.lock left behind"
    );
}

// ---------------------------------------------------------------------------
// Auto-commit of the basic kinds of change

#[test]
fn add_modify_delete_rename_each_make_one_commit() {
    let (_sb, nb, _d) = one("");

    nb.write("a.md", "one\n");
    committed(&nb, "a.md", "one\n");
    count_stays(&nb, 1, "after adding a.md");
    assert_eq!(nb.commit_paths("HEAD"), ["a.md"]);

    nb.write("a.md", "two\n");
    committed(&nb, "a.md", "two\n");
    count_stays(&nb, 2, "after modifying a.md");

    std::fs::remove_file(nb.path.join("a.md")).unwrap();
    absent(&nb, "a.md");
    count_stays(&nb, 3, "after deleting a.md");

    nb.write("b.md", "a file long enough to be recognised as renamed\n");
    committed(
        &nb,
        "b.md",
        "a file long enough to be recognised as renamed\n",
    );
    count_stays(&nb, 4, "after adding b.md");
    std::fs::rename(nb.path.join("b.md"), nb.path.join("c.md")).unwrap();
    committed(
        &nb,
        "c.md",
        "a file long enough to be recognised as renamed\n",
    );
    assert_eq!(
        nb.blob("b.md"),
        None,
        "the rename's old side is gone in the same commit"
    );
    count_stays(&nb, 5, "after renaming b.md to c.md");
    let renamed = nb.git(&["show", "-M", "--name-status", "--format=", "HEAD"]);
    assert!(renamed.starts_with("R"), "git sees a rename: {renamed}");

    assert_eq!(
        nb.status_porcelain(),
        "",
        "git status is clean after auto-commits"
    );
    assert_sound(&nb);
}

#[test]
fn files_written_together_make_one_commit() {
    let (_sb, nb, _d) = one("debounce = \"500ms\"");
    nb.write("keep.md", "k\n");
    committed(&nb, "keep.md", "k\n");
    let before = nb.count();

    let names: Vec<String> = (0..8).map(|i| format!("batch/f{i}.md")).collect();
    for n in &names {
        nb.write(n, &format!("{n}\n"));
    }
    for n in &names {
        committed(&nb, n, &format!("{n}\n"));
    }
    count_stays(&nb, before + 1, "one commit for the batch");
    let mut paths = nb.commit_paths("HEAD");
    paths.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(paths, expected, "the commit holds exactly the batch");
    assert_eq!(nb.status_porcelain(), "");
    assert_sound(&nb);
}

#[test]
fn no_empty_commits_for_changes_that_change_nothing() {
    // A long debounce so the pending state is observable before the round runs.
    let (sb, nb, _d) = one("debounce = \"1s\"");
    nb.write("a.md", "same\n");
    committed(&nb, "a.md", "same\n");
    wait_for(COMMIT, "pending empty after the commit", || {
        (pending(&sb, "nb") == 0).then_some(())
    });
    let head = nb.head();
    let count = nb.count();

    // Same bytes rewritten, a file created and removed again, a touch.
    nb.write("a.md", "same\n");
    nb.write("flash.md", "gone soon\n");
    std::fs::remove_file(nb.path.join("flash.md")).unwrap();
    std::fs::File::options()
        .append(true)
        .open(nb.path.join("a.md"))
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    wait_for(COMMIT, "the events to be pending", || {
        (pending(&sb, "nb") > 0).then_some(())
    });
    wait_for(COMMIT, "the round to run (pending back to 0)", || {
        (pending(&sb, "nb") == 0).then_some(())
    });
    count_stays(&nb, count, "no commit for a change that changes nothing");
    assert_eq!(nb.head(), head);
    assert_eq!(nb.blob("flash.md"), None);
    assert_sound(&nb);
}

#[test]
fn a_directory_rename_and_a_directory_removal_are_committed_whole() {
    let (_sb, nb, _d) = one("");
    for i in 0..5 {
        nb.write(
            &format!("docs/sub/f{i}.md"),
            &format!("file number {i} with some text\n"),
        );
    }
    nb.write("old/x.md", "x\n");
    nb.write("old/deeper/y.md", "y\n");
    for i in 0..5 {
        committed(
            &nb,
            &format!("docs/sub/f{i}.md"),
            &format!("file number {i} with some text\n"),
        );
    }
    committed(&nb, "old/deeper/y.md", "y\n");
    let count = nb.count();

    std::fs::rename(nb.path.join("docs"), nb.path.join("documents")).unwrap();
    for i in 0..5 {
        committed(
            &nb,
            &format!("documents/sub/f{i}.md"),
            &format!("file number {i} with some text\n"),
        );
    }
    wait_for(COMMIT, "docs/ gone from HEAD", || {
        (!nb.head_tree()
            .iter()
            .any(|(_, _, p)| p.starts_with("docs/")))
        .then_some(())
    });
    count_stays(&nb, count + 1, "one commit for a directory rename");

    std::fs::remove_dir_all(nb.path.join("old")).unwrap();
    wait_for(COMMIT, "old/ gone from HEAD", || {
        (!nb.head_tree().iter().any(|(_, _, p)| p.starts_with("old/"))).then_some(())
    });
    count_stays(&nb, count + 2, "one commit for a directory removal");
    assert_eq!(nb.status_porcelain(), "");
    assert_sound(&nb);
}

#[test]
fn a_path_unignored_by_a_gitignore_edit_is_committed() {
    let sb = Sandbox::new();
    let nb = sb.repo("nb");
    nb.write(".gitignore", "build/\n*.log\n");
    nb.write("build/out/artifact.txt", "artifact\n");
    nb.write("keep.log", "log\n");
    nb.commit_all("base");
    let _d = sb.serve_one("nb", &nb, "");
    nb.write("build/out/more.txt", "more\n");
    head_stays(&nb, "for ignored files");

    // The user un-ignores build/: what was there all along is committed now,
    // and the new directories are watched.
    nb.write(".gitignore", "*.log\n");
    committed(&nb, ".gitignore", "*.log\n");
    committed(&nb, "build/out/artifact.txt", "artifact\n");
    committed(&nb, "build/out/more.txt", "more\n");
    nb.write("build/out/after.txt", "after\n");
    committed(&nb, "build/out/after.txt", "after\n");
    assert_eq!(nb.blob("keep.log"), None, "*.log is still ignored");
    assert_eq!(nb.status_porcelain(), "");
    assert_sound(&nb);
}

#[test]
fn files_in_a_new_nested_directory_are_committed() {
    let (_sb, nb, _d) = one("");
    // mkdir -p and write at once: the watch on the inner directories comes too late
    // for inotify to report these files (the directory race).
    std::fs::create_dir_all(nb.path.join("a/b/c")).unwrap();
    std::fs::write(nb.path.join("a/b/c/deep.md"), "deep\n").unwrap();
    std::fs::write(nb.path.join("a/b/mid.md"), "mid\n").unwrap();
    std::fs::write(nb.path.join("a/top.md"), "top\n").unwrap();
    committed(&nb, "a/b/c/deep.md", "deep\n");
    committed(&nb, "a/b/mid.md", "mid\n");
    committed(&nb, "a/top.md", "top\n");
    // The new directories are watched now.
    nb.write("a/b/c/later.md", "later\n");
    committed(&nb, "a/b/c/later.md", "later\n");
    assert_eq!(nb.status_porcelain(), "");
    assert_sound(&nb);
}

// ---------------------------------------------------------------------------
// Editor temporaries and editor saves

const TEMPORARIES: &[&str] = &[
    "4913",
    ".x.md.swp",
    ".x.md.swo",
    ".x.md.swx",
    "x.md~",
    "#x.md#",
    "sub/4913",
    "sub/.y.md.swp",
    "sub/y.md~",
    "sub/#y.md#",
];

fn is_temporary(p: &str) -> bool {
    let name = p.rsplit('/').next().unwrap();
    name == "4913"
        || name.ends_with(".swp")
        || name.ends_with(".swo")
        || name.ends_with(".swx")
        || name.ends_with('~')
        || name.starts_with(".#")
        || (name.starts_with('#') && name.ends_with('#'))
}

#[test]
fn editor_temporaries_are_never_committed() {
    let (sb, nb, _d) = one("");
    nb.write("x.md", "real\n");
    nb.write("sub/y.md", "real\n");
    committed(&nb, "x.md", "real\n");
    committed(&nb, "sub/y.md", "real\n");
    let count = nb.count();

    for t in TEMPORARIES {
        nb.write(t, "temporary\n");
    }
    // emacs lock files are dangling symlinks.
    symlink("user@host.1234:1700000000", nb.path.join(".#x.md")).unwrap();
    symlink("user@host.1234:1700000000", nb.path.join("sub/.#y.md")).unwrap();
    // Only temporaries changed: nothing may be pending or committed.
    holds_for(QUIET, "no pending change from temporaries", || {
        pending(&sb, "nb") == 0
    });
    count_stays(&nb, count, "for temporaries only");

    // A real change next to them commits the real file only.
    nb.write("x.md", "real 2\n");
    committed(&nb, "x.md", "real 2\n");
    assert_eq!(nb.commit_paths("HEAD"), ["x.md"]);
    for t in TEMPORARIES {
        std::fs::remove_file(nb.path.join(t)).unwrap();
    }
    std::fs::remove_file(nb.path.join(".#x.md")).unwrap();
    std::fs::remove_file(nb.path.join("sub/.#y.md")).unwrap();
    count_stays(&nb, count + 1, "after removing the temporaries");
    let ever = nb.ever_committed();
    let leaked: Vec<_> = ever.iter().filter(|p| is_temporary(p)).collect();
    assert!(leaked.is_empty(), "temporaries committed: {leaked:?}");
    assert_eq!(nb.status_porcelain(), "");
    assert_sound(&nb);
}

/// A notebook for the editor-save tests. vim skips its backup dance for
/// files under /tmp (`backupskip`); the real-vim test clears that option
/// instead of moving the notebook, so the tests run from a checkout anywhere.
fn editor_notebook(sb: &Sandbox) -> Repo {
    sb.repo("nb")
}

fn assert_one_clean_commit_of(nb: &Repo, before: usize, rel: &str) {
    count_stays(nb, before + 1, &format!("one commit for the save of {rel}"));
    assert_eq!(
        nb.commit_paths("HEAD"),
        [rel],
        "the save's commit holds only {rel}"
    );
    let leaked: Vec<_> = nb
        .ever_committed()
        .into_iter()
        .filter(|p| is_temporary(p) || p.contains(".tmp"))
        .collect();
    assert!(leaked.is_empty(), "temporaries committed: {leaked:?}");
    assert_eq!(nb.status_porcelain(), "");
    assert_sound(nb);
}

#[test]
fn a_real_vim_save_makes_one_clean_commit() {
    if std::process::Command::new("vim")
        .arg("--version")
        .output()
        .is_err()
    {
        support::skip("vim is not installed (the simulated save test covers the sequence)");
        return;
    }
    let sb = Sandbox::new();
    let nb = editor_notebook(&sb);
    let _d = sb.serve_one("nb", &nb, "debounce = \"300ms\"");
    nb.write("note.md", "hello\n");
    committed(&nb, "note.md", "hello\n");
    let before = nb.count();

    // vim with defaults (writebackup, backupcopy=auto, swapfile): 4913 probe,
    // note.md -> note.md~, new note.md, remove note.md~ and the swap file.
    // An empty `backupskip` makes vim do under /tmp what it does elsewhere.
    let mut cmd = std::process::Command::new("vim");
    cmd.current_dir(&nb.path)
        .args([
            "--cmd",
            "set backupskip=",
            "-u",
            "NONE",
            "-i",
            "NONE",
            "-N",
            "-es",
            "-c",
            "call append(line('$'), 'from vim')",
            "-c",
            "wq",
            "note.md",
        ])
        .env_clear()
        .stdin(std::process::Stdio::null());
    for (k, v) in &sb.env {
        cmd.env(k, v);
    }
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "vim failed: {out:?}");
    assert_eq!(
        std::fs::read_to_string(nb.path.join("note.md")).unwrap(),
        "hello\nfrom vim\n"
    );
    committed(&nb, "note.md", "hello\nfrom vim\n");
    assert_one_clean_commit_of(&nb, before, "note.md");
}

#[test]
fn a_simulated_vim_save_makes_one_clean_commit() {
    let sb = Sandbox::new();
    let nb = editor_notebook(&sb);
    let _d = sb.serve_one("nb", &nb, "debounce = \"300ms\"");
    nb.write("x.md", "v1\n");
    committed(&nb, "x.md", "v1\n");

    // The swap file lives for the whole editing session, across other commits.
    nb.write(".x.md.swp", "swap\n");
    nb.write("other.md", "other\n");
    committed(&nb, "other.md", "other\n");
    let before = nb.count();

    // :w — the exact sequence vim 9 makes (outside /tmp, or with an empty backupskip).
    let p = |r: &str| nb.path.join(r);
    std::fs::write(p(".x.md.swp"), "swap 2\n").unwrap();
    std::fs::write(p("4913"), "").unwrap();
    std::fs::remove_file(p("4913")).unwrap();
    std::fs::rename(p("x.md"), p("x.md~")).unwrap();
    std::fs::File::create(p("x.md")).unwrap();
    std::fs::write(p("x.md"), "v2\n").unwrap();
    std::fs::remove_file(p("x.md~")).unwrap();
    std::fs::remove_file(p(".x.md.swp")).unwrap();

    committed(&nb, "x.md", "v2\n");
    assert_one_clean_commit_of(&nb, before, "x.md");
}

#[test]
fn an_atomic_rename_over_save_makes_one_clean_commit() {
    let sb = Sandbox::new();
    let nb = editor_notebook(&sb);
    let _d = sb.serve_one("nb", &nb, "debounce = \"300ms\"");
    nb.write("note.md", "v1\n");
    committed(&nb, "note.md", "v1\n");
    let before = nb.count();

    std::fs::write(nb.path.join(".note.md.tmp1"), "v2\n").unwrap();
    std::fs::rename(nb.path.join(".note.md.tmp1"), nb.path.join("note.md")).unwrap();
    committed(&nb, "note.md", "v2\n");
    assert_one_clean_commit_of(&nb, before, "note.md");
}

// ---------------------------------------------------------------------------
// Ignored paths and watches

#[test]
fn ignored_files_are_never_committed_and_ignored_directories_get_no_watch() {
    let sb = Sandbox::new();
    let nb = sb.repo("nb");
    nb.write(".gitignore", "build/\n*.log\nnode_modules/\n");
    for d in [
        "src/deep",
        "node_modules/pkg/lib",
        "node_modules/other",
        "build/out",
        "cache/sub",
    ] {
        std::fs::create_dir_all(nb.path.join(d)).unwrap();
    }
    nb.commit_all("base");
    let _d = sb.serve_one("nb", &nb, "ignore = [\"*.tmp\", \"cache/\"]");

    // root, src, src/deep: nothing under node_modules/, build/ or cache/, not .git.
    let watches = status(&sb, "nb")["watches"].clone();
    assert_eq!(watches, json!(3), "watches: root, src, src/deep only");

    let ignored = [
        "node_modules/pkg/lib/index.js",
        "node_modules/other/x.js",
        "build/out/x.o",
        "app.log",
        "src/deep/trace.log",
        "src/b.tmp",
        "cache/sub/c.txt",
        "cache/top.txt",
    ];
    for f in ignored {
        nb.write(f, "ignored\n");
    }
    // Events on ignored paths never arm the timer.
    holds_for(QUIET, "nothing pending for ignored paths", || {
        pending(&sb, "nb") == 0
    });
    count_stays(&nb, 1, "for ignored files only");

    nb.write("src/deep/real.md", "real\n");
    committed(&nb, "src/deep/real.md", "real\n");
    assert_eq!(nb.commit_paths("HEAD"), ["src/deep/real.md"]);
    count_stays(&nb, 2, "after the real file");
    let ever = nb.ever_committed();
    for f in ignored {
        assert!(!ever.contains(f), "{f} was committed");
    }
    // git knows nothing of gitlockd's own `ignore` globs: those stay untracked.
    assert_eq!(
        nb.status_porcelain(),
        "?? cache/\n?? src/b.tmp",
        "only `ignore` glob matches untracked"
    );
    assert_sound(&nb);
}

#[test]
fn status_watches_follow_directories_created_and_removed() {
    let (sb, nb, _d) = one("");
    let w0 = status(&sb, "nb")["watches"].as_u64().unwrap();
    assert_eq!(w0, 1, "an empty notebook watches its root only");
    std::fs::create_dir_all(nb.path.join("n1/n2")).unwrap();
    nb.write("n1/n2/f.md", "f\n");
    committed(&nb, "n1/n2/f.md", "f\n");
    wait_for(
        COMMIT,
        "status watches to count the new directories (3)",
        || (status(&sb, "nb")["watches"] == json!(3)).then_some(()),
    );
    std::fs::remove_dir_all(nb.path.join("n1")).unwrap();
    absent(&nb, "n1/n2/f.md");
    wait_for(COMMIT, "status watches back to 1", || {
        (status(&sb, "nb")["watches"] == json!(1)).then_some(())
    });
    assert_sound(&nb);
}

// ---------------------------------------------------------------------------
// max_file_size and symlinks

#[test]
fn files_over_max_file_size_are_skipped_and_reported() {
    let (sb, nb, d) = one("max_file_size = \"1KiB\"");
    nb.write("big.bin", &"x".repeat(4096));
    nb.write("small.md", "small\n");
    committed(&nb, "small.md", "small\n");
    let skipped = |sb: &Sandbox| -> Vec<String> {
        status(sb, "nb")["skipped_large"]
            .as_array()
            .unwrap_or_else(|| panic!("skipped_large is a list"))
            .iter()
            .map(|e| e["path"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    wait_for(COMMIT, "big.bin in status skipped_large", || {
        skipped(&sb)
            .iter()
            .any(|p| p.ends_with("big.bin"))
            .then_some(())
    });
    let log = d.wait_log("big.bin", COMMIT);
    assert!(
        log.lines()
            .any(|l| l.contains("big.bin") && l.contains("WARN")),
        "a warning names big.bin:\n{log}"
    );
    assert_eq!(nb.blob("big.bin"), None, "big.bin is never committed");

    // Another commit later: big.bin is still not committed and still reported.
    nb.write("small2.md", "small 2\n");
    committed(&nb, "small2.md", "small 2\n");
    assert!(
        !nb.ever_committed().contains("big.bin"),
        "big.bin was committed"
    );
    assert!(
        skipped(&sb).iter().any(|p| p.ends_with("big.bin")),
        "status must keep reporting big.bin while it stays uncommitted: {}",
        status(&sb, "nb")
    );
    // Shrunk below the limit: committed, and no longer reported.
    nb.write("big.bin", "small now\n");
    committed(&nb, "big.bin", "small now\n");
    wait_for(COMMIT, "big.bin gone from skipped_large", || {
        (!skipped(&sb).iter().any(|p| p.ends_with("big.bin"))).then_some(())
    });
    assert_sound(&nb);
}

#[test]
fn symlinks_are_committed_as_links_never_followed() {
    let (sb, nb, _d) = one("");
    let outside = sb.root.join("tmp/outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "secret\n").unwrap();
    nb.write("target.md", "target\n");
    symlink("target.md", nb.path.join("link.md")).unwrap();
    symlink("does-not-exist", nb.path.join("dangling")).unwrap();
    symlink(&outside, nb.path.join("outside-dir")).unwrap();
    committed(&nb, "link.md", "target.md");
    committed(&nb, "dangling", "does-not-exist");
    committed(&nb, "outside-dir", &outside.display().to_string());
    assert_eq!(nb.head_mode("link.md").as_deref(), Some("120000"));
    assert_eq!(nb.head_mode("dangling").as_deref(), Some("120000"));
    assert_eq!(nb.head_mode("outside-dir").as_deref(), Some("120000"));
    assert_eq!(nb.head_mode("target.md").as_deref(), Some("100644"));
    // A file replaced by a symlink (type change) and back.
    nb.write("flip.md", "a file\n");
    committed(&nb, "flip.md", "a file\n");
    std::fs::remove_file(nb.path.join("flip.md")).unwrap();
    symlink("target.md", nb.path.join("flip.md")).unwrap();
    wait_for(COMMIT, "flip.md committed as a link", || {
        (nb.head_mode("flip.md").as_deref() == Some("120000")).then_some(())
    });
    assert_eq!(nb.blob("flip.md").as_deref(), Some("target.md"));
    // Writing through the link into the outside folder changes nothing here.
    let count = nb.count();
    std::fs::write(outside.join("new.txt"), "new\n").unwrap();
    count_stays(
        &nb,
        count,
        "for a write outside the notebook through a symlink",
    );
    assert!(!nb
        .ever_committed()
        .iter()
        .any(|p| p.starts_with("outside-dir/")));
    assert_eq!(nb.status_porcelain(), "");
    assert_sound(&nb);
}

// ---------------------------------------------------------------------------
// max_delay

#[test]
fn max_delay_commits_while_writes_never_pause() {
    let (_sb, nb, _d) = one("debounce = \"5s\"\nmax_delay = \"1s\"");
    nb.write("base.md", "base\n");
    // The base commit comes after the 5 s debounce (or max_delay): wait for it.
    committed(&nb, "base.md", "base\n");
    let head0 = nb.head();

    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicUsize::new(0));
    let path = nb.path.join("log.txt");
    let writer = {
        let (stop, writes) = (stop.clone(), writes.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::File::create(&path).unwrap();
            while !stop.load(Ordering::SeqCst) {
                writeln!(f, "line {}", writes.fetch_add(1, Ordering::SeqCst)).unwrap();
                f.flush().unwrap();
                std::thread::sleep(Duration::from_millis(100)); // the writer's pace, not a sync
            }
        })
    };
    let began = Instant::now();
    // With a 5 s debounce and writes every 100 ms, only max_delay can commit.
    let first = wait_for(
        Duration::from_secs(15),
        "a commit of log.txt while writes go on",
        || (nb.head() != head0 && nb.blob("log.txt").is_some()).then(|| nb.head().unwrap()),
    );
    let first_at = began.elapsed();
    assert!(!stop.load(Ordering::SeqCst));
    // And again: max_delay keeps applying while the writer goes on.
    wait_for(
        Duration::from_secs(15),
        "a second commit while writes go on",
        || (nb.head().as_deref() != Some(first.as_str())).then_some(()),
    );
    let second_at = began.elapsed();
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    // max_delay is 1 s; the bounds leave room for a loaded machine and for
    // the odd round whose batch is re-checked because log.txt changed while
    // it was staged (that resets the max_delay clock: see the ignored
    // `max_delay_bounds_commits_of_a_file_written_every_few_ms`). Without
    // max_delay there would be no commit at all while the writer runs.
    assert!(
        first_at < Duration::from_secs(8),
        "max_delay 1s: first commit after {first_at:?} (the 5 s debounce never elapses)"
    );
    assert!(
        second_at < Duration::from_secs(8) + first_at,
        "max_delay 1s: second commit after {second_at:?}"
    );
    // Everything ends up committed once the writer stops.
    let content = std::fs::read_to_string(nb.path.join("log.txt")).unwrap();
    committed(&nb, "log.txt", &content);
    assert_sound(&nb);
}

/// A file written every 2 ms (a log, a database) is always changing when a
/// round stages it: the stager puts it back for a recheck, and the re-queue
/// restarts its max_delay clock, so commits stall for many seconds
/// (observed: 2 commits in 12 s, none in the last 6 s). max_delay should
/// bound that too.
#[test]
fn max_delay_bounds_commits_of_a_file_written_every_few_ms() {
    // A one-hour debounce never expires while the file is written every few
    // ms, so every commit during the writing is max_delay's doing.
    let (_sb, nb, mut d) = one("debounce = \"1h\"\nmax_delay = \"1s\"");
    nb.write("base.md", "base\n");
    committed(&nb, "base.md", "base\n");
    let stop = Arc::new(AtomicBool::new(false));
    let path = nb.path.join("log.txt");
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::File::create(&path).unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                writeln!(f, "line {i}").unwrap();
                i += 1;
                // The writer's pace: well under any debounce, light enough
                // for a loaded machine.
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    // Over 10 s of writing, commits keep coming about every second (at
    // least 3, no gap of 5 s: without max_delay there would be none). The
    // bounds leave room for a loaded machine (a round takes time too).
    let began = Instant::now();
    let mut last = nb.head();
    let mut last_at = Instant::now();
    let mut gaps = Vec::new();
    while began.elapsed() < Duration::from_secs(10) {
        let h = nb.head();
        if h != last {
            gaps.push(last_at.elapsed());
            last = h;
            last_at = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    gaps.push(last_at.elapsed());
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let worst = gaps.iter().max().copied().unwrap_or_default();
    assert!(
        gaps.len() >= 4 && worst < Duration::from_secs(5),
        "max_delay 1s: {} commit(s) in 10 s of writing, longest gap {worst:?} (gaps {gaps:?})",
        gaps.len() - 1
    );
    // fsck while the daemon may still be committing reports objects written
    // after its object scan as missing (a race in the check, not in the
    // repository): stop the daemon, which commits what is pending, first.
    d.stop();
    assert_eq!(
        nb.blob("log.txt"),
        Some(std::fs::read_to_string(nb.path.join("log.txt")).unwrap()),
        "the stop committed the last lines"
    );
    // fsck races a commit still in flight (it lists objects, then reads refs
    // and the index): check once the last write is committed.
    let last = std::fs::read_to_string(nb.path.join("log.txt")).unwrap();
    committed(&nb, "log.txt", &last);
    assert_sound(&nb);
}

// ---------------------------------------------------------------------------
// Catch-up at start

#[test]
fn changes_made_while_stopped_are_committed_at_start_before_readiness() {
    let sb = Sandbox::new();
    let nb = sb.repo("nb");
    nb.write("keep.md", "keep\n");
    nb.write("modify.md", "old\n");
    nb.write("delete.md", "delete\n");
    nb.write(
        "dir/rename-me.md",
        "a file long enough to be recognised as renamed\n",
    );
    nb.commit_all("base");
    sb.write_config("", &[("nb", &nb.path, "")]);
    {
        // A first run, stopped cleanly.
        let mut d = sb.start_serving(&["nb"]);
        d.signal(libc::SIGTERM);
        assert_eq!(d.wait_exit(COMMIT), Some(0));
    }
    assert_eq!(nb.count(), 1);

    nb.write("modify.md", "new\n");
    std::fs::remove_file(nb.path.join("delete.md")).unwrap();
    nb.write("new.md", "new\n");
    nb.write("x/y/z/nested.md", "nested\n");
    std::fs::rename(
        nb.path.join("dir/rename-me.md"),
        nb.path.join("dir/renamed.md"),
    )
    .unwrap();

    let notify = NotifyListener::bind(&sb);
    let _d = sb.spawn(&[("NOTIFY_SOCKET", notify.path.to_str().unwrap())]);
    notify.expect("READY=1");
    // Readiness comes after the catch-up: everything is on HEAD already.
    let diffs = nb.uncommitted(&no_skip);
    assert!(diffs.is_empty(), "not committed at readiness: {diffs:?}");
    assert_eq!(nb.blob("delete.md"), None);
    assert_eq!(nb.blob("dir/rename-me.md"), None);
    assert_eq!(nb.count(), 2, "one catch-up commit");
    assert_eq!(nb.status_porcelain(), "");
    assert_sound(&nb);
}

/// A datagram socket standing in for systemd's NOTIFY_SOCKET.
struct NotifyListener {
    sock: std::os::unix::net::UnixDatagram,
    path: PathBuf,
}

impl NotifyListener {
    fn bind(sb: &Sandbox) -> NotifyListener {
        let path = sb.root.join("run/notify.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        NotifyListener { sock, path }
    }

    fn expect(&self, first_line: &str) -> String {
        let mut buf = vec![0u8; 4096];
        let n = self
            .sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no {first_line} datagram: {e}"));
        let msg = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(
            msg.lines().next() == Some(first_line),
            "expected {first_line}, got {msg:?}"
        );
        msg
    }
}

// ---------------------------------------------------------------------------
// Other git users: merges, foreign index.lock

/// A repository with a committed conflict waiting on branch `other`.
fn conflicting_branches(sb: &Sandbox) -> Repo {
    let nb = sb.repo("nb");
    nb.write("f.md", "base\n");
    nb.commit_all("base");
    nb.git(&["checkout", "-q", "-b", "other"]);
    nb.write("f.md", "other\n");
    nb.commit_all("other");
    nb.git(&["checkout", "-q", "main"]);
    nb.write("f.md", "main\n");
    nb.commit_all("main");
    nb
}

fn start_conflicted_merge(sb: &Sandbox, nb: &Repo) -> String {
    let main = nb.head().unwrap();
    let out = nb.git_output(&["merge", "other"]);
    assert!(!out.status.success(), "the merge must conflict");
    assert!(nb.path.join(".git/MERGE_HEAD").exists());
    nb.write("during-merge.md", "written mid-merge\n");
    wait_for(COMMIT, "status to say the repository is mid-merge", || {
        let s = status(sb, "nb");
        let says = |k: &str| s[k].as_str().is_some_and(|v| v.contains("merge"));
        (says("state") && says("last_error")).then_some(())
    });
    holds_for(QUIET, "no commit while MERGE_HEAD exists", || {
        nb.head().as_deref() == Some(main.as_str())
    });
    assert_eq!(nb.blob("during-merge.md"), None);
    main
}

#[test]
fn no_commit_mid_merge_until_it_is_aborted() {
    let sb = Sandbox::new();
    let nb = conflicting_branches(&sb);
    let _d = sb.serve_one("nb", &nb, "");
    let main = start_conflicted_merge(&sb, &nb);

    nb.git(&["merge", "--abort"]);
    committed(&nb, "during-merge.md", "written mid-merge\n");
    assert_eq!(
        nb.git(&["rev-parse", "HEAD^"]),
        main,
        "committed on top of main"
    );
    assert_eq!(nb.blob("f.md").as_deref(), Some("main\n"));
    assert_eq!(nb.commit_paths("HEAD"), ["during-merge.md"]);
    wait_for(COMMIT, "status state clean again", || {
        let s = status(&sb, "nb");
        (s["state"] == json!("clean") && s["last_error"].is_null()).then_some(())
    });
    assert_eq!(nb.status_porcelain(), "");
    assert_sound(&nb);
}

#[test]
fn no_commit_mid_merge_until_it_is_resolved_and_committed() {
    let sb = Sandbox::new();
    let nb = conflicting_branches(&sb);
    let _d = sb.serve_one("nb", &nb, "");
    let main = start_conflicted_merge(&sb, &nb);

    // Resolve: the conflicted file is edited and staged; still mid-merge.
    nb.write("f.md", "resolved\n");
    nb.git(&["add", "f.md"]);
    head_stays(&nb, "while the resolved merge is not committed yet");
    nb.git(&["commit", "-q", "--no-edit"]);
    let merge = nb.head().unwrap();
    assert_ne!(merge, main);
    committed(&nb, "during-merge.md", "written mid-merge\n");
    assert_eq!(
        nb.git(&["rev-parse", "HEAD^"]),
        merge,
        "the auto-commit follows the merge commit"
    );
    assert_eq!(nb.git(&["rev-list", "--count", "--merges", "HEAD"]), "1");
    assert_eq!(nb.blob("f.md").as_deref(), Some("resolved\n"));
    assert_eq!(nb.status_porcelain(), "");
    nb.assert_fsck_clean();
}

#[test]
fn a_foreign_index_lock_defers_the_commit_until_it_is_removed() {
    let (sb, nb, _d) = one_with_base("");

    let lock = nb.path.join(".git/index.lock");
    std::fs::write(&lock, "").unwrap();
    nb.write("a.md", "a\n");
    sb.client().wait_last_error("nb", &["index.lock"]);
    head_stays(&nb, "while another process holds index.lock");
    assert_eq!(nb.count(), 1);
    std::fs::remove_file(&lock).unwrap();
    committed(&nb, "a.md", "a\n");
    sb.client().wait_error_cleared("nb");
    assert_eq!(nb.status_porcelain(), "");
    assert_sound(&nb);
}

#[test]
fn a_foreign_ref_lock_defers_the_commit_until_it_is_removed() {
    let (sb, nb, _d) = one_with_base("");

    let lock = nb.path.join(".git/refs/heads/main.lock");
    std::fs::write(&lock, "").unwrap();
    nb.write("a.md", "a\n");
    sb.client().wait_last_error("nb", &["main.lock"]);
    head_stays(&nb, "while another process holds refs/heads/main.lock");
    std::fs::remove_file(&lock).unwrap();
    committed(&nb, "a.md", "a\n");
    assert_eq!(nb.count(), 2);
    assert_eq!(
        nb.status_porcelain(),
        "",
        "index in step with HEAD after the retry"
    );
    assert_sound(&nb);
}

/// issue 3: "A stale index.lock left by gitlockd's own crash must not wedge it
/// forever". Simulated the way a kill -9 mid `index.write()` leaves it: the
/// write marker of a gitlockd that no longer runs, and a partial copy of the
/// index that no process holds open, written after the marker.
#[test]
fn a_stale_index_lock_left_by_our_own_crash_does_not_wedge_auto_commits() {
    let sb = Sandbox::new();
    let nb = sb.repo_with_base("nb");
    sb.write_config("", &[("nb", &nb.path, "")]);
    let mut d = sb.start();
    let dead_pid = d.child.id();
    d.kill9();
    std::fs::write(
        nb.path.join(".git").join(gitlockd::recovery::MARKER),
        format!("{dead_pid} 1\n"),
    )
    .unwrap();
    let index = std::fs::read(nb.path.join(".git/index")).unwrap();
    std::fs::write(nb.path.join(".git/index.lock"), &index[..index.len() / 2]).unwrap();

    let _d = sb.start_serving(&["nb"]);
    nb.write("after-crash.md", "after\n");
    wait_for(
        Duration::from_secs(30),
        "a commit despite the stale index.lock",
        || (nb.blob("after-crash.md").as_deref() == Some("after\n")).then_some(()),
    );
    assert_eq!(nb.status_porcelain(), "");
    assert_sound(&nb);
}

// ---------------------------------------------------------------------------
// pause / resume

#[test]
fn paused_notebooks_collect_changes_and_commit_them_on_resume() {
    let (sb, nb, _d) = one("");
    nb.write("base.md", "base\n");
    committed(&nb, "base.md", "base\n");
    let count = nb.count();
    let mut c = sb.client();
    let r = c.ok("pause", json!({"notebook": "nb"}));
    assert_eq!(r["paused"], json!(true));
    assert_eq!(c.status_of("nb")["paused"], json!(true));

    nb.write("p1.md", "p1\n");
    nb.write("p2.md", "p2\n");
    std::fs::remove_file(nb.path.join("base.md")).unwrap();
    wait_for(COMMIT, "pending > 0 while paused", || {
        (pending(&sb, "nb") >= 3).then_some(())
    });
    count_stays(&nb, count, "while paused");
    holds_for(QUIET, "changes still pending while paused", || {
        pending(&sb, "nb") >= 3
    });

    let r = c.ok("resume", json!({"notebook": "nb"}));
    assert_eq!(r["paused"], json!(false));
    committed(&nb, "p1.md", "p1\n");
    committed(&nb, "p2.md", "p2\n");
    absent(&nb, "base.md");
    assert_eq!(c.status_of("nb")["paused"], json!(false));
    wait_for(COMMIT, "pending 0 after resume", || {
        (pending(&sb, "nb") == 0).then_some(())
    });
    assert_eq!(nb.status_porcelain(), "");
    assert_sound(&nb);
}

// ---------------------------------------------------------------------------
// Linked worktrees and a .git symlink

#[test]
fn a_linked_worktree_notebook_auto_commits_on_its_branch() {
    let sb = Sandbox::new();
    let main = sb.repo("main");
    main.write("m.md", "main\n");
    main.commit_all("base");
    let wt_path = sb.root.join("books/wt");
    main.git(&[
        "worktree",
        "add",
        "-q",
        "-b",
        "wtbranch",
        wt_path.to_str().unwrap(),
    ]);
    assert!(
        wt_path.join(".git").is_file(),
        ".git is a file in a linked worktree"
    );
    let wt = sb.open_repo(&wt_path);
    let main_head = main.head().unwrap();

    let _d = sb.serve_one("wt", &wt, "");
    wt.write("w.md", "in the worktree\n");
    committed(&wt, "w.md", "in the worktree\n");
    assert_eq!(wt.git(&["rev-parse", "--abbrev-ref", "HEAD"]), "wtbranch");
    assert_eq!(
        main.head().unwrap(),
        main_head,
        "main's branch is untouched"
    );
    assert_eq!(main.git(&["rev-parse", "wtbranch"]), wt.head().unwrap());
    assert_eq!(wt.status_porcelain(), "");
    assert_eq!(
        main.status_porcelain(),
        "",
        "the main work tree's index is untouched"
    );
    wt.assert_fsck_clean();
    main.assert_fsck_clean();
    wt.assert_no_empty_commits();
}

#[test]
fn a_repository_whose_git_dir_is_a_symlink_auto_commits() {
    let sb = Sandbox::new();
    let nb = sb.repo_with_base("nb");
    let store = sb.root.join("store");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::rename(nb.path.join(".git"), store.join("nb.git")).unwrap();
    symlink(store.join("nb.git"), nb.path.join(".git")).unwrap();
    assert_eq!(nb.git(&["rev-list", "--count", "HEAD"]), "1");

    let _d = sb.serve_one("nb", &nb, "");
    nb.write("new.md", "new\n");
    committed(&nb, "new.md", "new\n");
    nb.write("base.md", "base 2\n");
    committed(&nb, "base.md", "base 2\n");
    assert!(
        nb.path.join(".git").is_symlink(),
        "the symlink is left alone"
    );
    assert!(!nb.ever_committed().iter().any(|p| p.starts_with(".git")));
    assert_eq!(nb.status_porcelain(), "");
    assert_sound(&nb);
}
