//! The notebook watcher against real inotify, real files and real git repositories.
//!
//! Temp dirs live under the target dir, not /tmp (vim's `backupskip` makes
//! editors behave differently there). Every wait is a bounded receive with a
//! deadline; "nothing happened" is proven by a sentinel write that must be
//! seen after the write that must not.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gitlockd::filter::PathFilter;
use gitlockd::watch::{NotebookWatcher, WatchError, WatchEvent};
use tokio::sync::mpsc::{channel, Receiver};

/// Generous: two shared cores under inotify load are slow (tech-findings §8.28).
const DEADLINE: Duration = Duration::from_secs(20);

struct Notebook {
    _dir: tempfile::TempDir,
    root: PathBuf,
    watcher: Option<NotebookWatcher>,
    rx: Receiver<WatchEvent>,
    rt: tokio::runtime::Runtime,
    /// Every event received so far, for failure messages and assertions.
    events: Vec<WatchEvent>,
    /// Union of all `Changed` paths since the last `clear`.
    changed: BTreeSet<PathBuf>,
    sentinels: usize,
}

fn temp_root() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("nb")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

/// A git repository holding `dirs` and `files`, watched with extra `globs`.
fn notebook(dirs: &[&str], files: &[(&str, &str)], globs: &[&str]) -> Notebook {
    let dir = temp_root();
    let root = dir.path().canonicalize().unwrap();
    git2::Repository::init(&root).unwrap();
    for d in dirs {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    for (path, content) in files {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
    let globs: Vec<String> = globs.iter().map(|g| g.to_string()).collect();
    let filter = Arc::new(PathFilter::new(&globs).unwrap());
    let (tx, rx) = channel(gitlockd::watch::NOTEBOOK_QUEUE);
    let watcher = NotebookWatcher::start("test", &root, filter, tx).unwrap();
    Notebook {
        _dir: dir,
        root,
        watcher: Some(watcher),
        rx,
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap(),
        events: Vec::new(),
        changed: BTreeSet::new(),
        sentinels: 0,
    }
}

impl Notebook {
    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn write(&self, rel: &str, content: &str) {
        fs::write(self.path(rel), content).unwrap();
    }

    fn count(&self) -> usize {
        self.watcher.as_ref().unwrap().watch_count()
    }

    fn clear(&mut self) {
        self.changed.clear();
        self.events.clear();
    }

    /// Receives until `done` holds for what was received, or fails after DEADLINE naming `label`.
    fn wait_for(&mut self, label: &str, done: impl Fn(&Notebook) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            let received = self
                .rt
                .block_on(async { tokio::time::timeout(left, self.rx.recv()).await });
            match received {
                Ok(Some(event)) => {
                    if let WatchEvent::Changed { paths, .. } = &event {
                        assert!(!paths.is_empty(), "Changed must never be empty");
                        self.changed.extend(paths.iter().cloned());
                    }
                    self.events.push(event);
                }
                Ok(None) => panic!("{label}: channel closed; events: {:#?}", self.events),
                Err(_) => panic!(
                    "{label}: not seen within {DEADLINE:?}; events: {:#?}",
                    self.events
                ),
            }
        }
    }

    fn wait_changed(&mut self, rels: &[&str]) {
        let wanted: Vec<PathBuf> = rels.iter().map(PathBuf::from).collect();
        self.wait_for(&format!("Changed {rels:?}"), |nb| {
            wanted.iter().all(|p| nb.changed.contains(p))
        });
    }

    /// Writes a fresh file and waits for it: everything written before it has been reported by then.
    fn barrier(&mut self) {
        self.sentinels += 1;
        let name = format!("sentinel-{}.md", self.sentinels);
        self.write(&name, "x");
        self.wait_changed(&[&name]);
    }

    /// What was reported apart from barrier files (a barrier's own events may straddle batches).
    fn changed_besides_sentinels(&self) -> BTreeSet<PathBuf> {
        self.changed
            .iter()
            .filter(|p| !p.to_string_lossy().starts_with("sentinel-"))
            .cloned()
            .collect()
    }

    fn rescans(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|e| match e {
                WatchEvent::Rescan { reason } => Some(reason.as_str()),
                _ => None,
            })
            .collect()
    }
}

fn set(paths: &[&str]) -> BTreeSet<PathBuf> {
    paths.iter().map(PathBuf::from).collect()
}

#[test]
fn start_watches_only_directories_git_would_track() {
    let mut nb = notebook(
        &[
            "a",
            "b",
            "node_modules/x",
            "node_modules/y",
            "build/out",
            "cache/deep",
            "nested/.git",
            "nested/inner",
        ],
        &[(".gitignore", "node_modules/\nbuild\n")],
        &["cache/"],
    );
    // root + a + b; not .git, node_modules (dir pattern), build (plain pattern),
    // cache (PathFilter glob), nested (own repository).
    assert_eq!(nb.count(), 3);
    // A symlink to a directory is a file-like entry: reported, never watched through.
    std::os::unix::fs::symlink(nb.path("a"), nb.path("link-to-a")).unwrap();
    nb.barrier();
    assert_eq!(nb.changed_besides_sentinels(), set(&["link-to-a"]));
    assert_eq!(nb.count(), 3);
}

#[test]
fn create_modify_delete_of_a_file_are_reported() {
    let mut nb = notebook(&["sub"], &[], &[]);
    nb.write("sub/note.md", "one");
    nb.wait_changed(&["sub/note.md"]);
    nb.clear();
    fs::OpenOptions::new()
        .append(true)
        .open(nb.path("sub/note.md"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"two"))
        .unwrap();
    nb.wait_changed(&["sub/note.md"]);
    nb.clear();
    fs::remove_file(nb.path("sub/note.md")).unwrap();
    nb.wait_changed(&["sub/note.md"]);
    assert!(nb.rescans().is_empty(), "{:?}", nb.events);
}

#[test]
fn ignored_and_excluded_paths_produce_no_event_and_no_watch() {
    let mut nb = notebook(
        &["node_modules/x", "build"],
        &[(".gitignore", "node_modules/\nbuild\n*.log\ndist/\n")],
        &["cache/", "*.tmp"],
    );
    let before = nb.count();
    assert_eq!(before, 1, "only the root");
    nb.write("node_modules/x/index.js", "x");
    nb.write("build/out.o", "x");
    nb.write("debug.log", "x");
    nb.write("scratch.tmp", "x");
    fs::create_dir_all(nb.path("dist/js")).unwrap();
    nb.write("dist/js/app.js", "x");
    fs::create_dir_all(nb.path("cache/a")).unwrap();
    nb.write("cache/a/c.txt", "x");
    nb.barrier();
    assert_eq!(nb.changed_besides_sentinels(), set(&[]));
    assert_eq!(nb.count(), before, "no watch on ignored directories");
    // Removing an ignored directory is no event either (the `dist/` form is
    // checked although the directory no longer exists).
    nb.clear();
    fs::remove_dir_all(nb.path("dist")).unwrap();
    nb.barrier();
    assert_eq!(nb.changed_besides_sentinels(), set(&[]));
}

#[test]
fn writes_under_dot_git_produce_nothing() {
    let mut nb = notebook(&[], &[("a.md", "a")], &[]);
    nb.barrier();
    nb.clear();
    fs::write(nb.path(".git/scratch"), "x").unwrap();
    let repo = git2::Repository::open(&nb.root).unwrap();
    let mut index = repo.index().unwrap();
    index.add_path(Path::new("a.md")).unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("t", "t@example.invalid").unwrap();
    repo.commit(Some("HEAD"), &sig, &sig, "m", &tree, &[])
        .unwrap();
    nb.barrier();
    assert_eq!(nb.changed_besides_sentinels(), set(&[]));
}

#[test]
fn a_new_directory_tree_is_watched_and_files_already_inside_are_reported() {
    let mut nb = notebook(&[], &[], &[]);
    let before = nb.count();
    // The directory race: f.md exists before any of these directories is watched.
    fs::create_dir_all(nb.path("new/a/b/c")).unwrap();
    nb.write("new/a/b/c/f.md", "f");
    nb.wait_changed(&["new/a/b/c/f.md"]);
    assert_eq!(nb.count(), before + 4);
    nb.clear();
    nb.write("new/a/b/c/g.md", "g");
    nb.wait_changed(&["new/a/b/c/g.md"]);
}

#[test]
fn a_vim_like_save_reports_the_file_and_never_a_temporary() {
    let mut nb = notebook(&[], &[("note.md", "v1")], &[]);
    nb.barrier();
    nb.clear();
    // The sequence vim 9 performs on :w outside /tmp (tech-findings §3.2).
    nb.write(".note.md.swp", "swap");
    nb.write("4913", "");
    fs::remove_file(nb.path("4913")).unwrap();
    fs::rename(nb.path("note.md"), nb.path("note.md~")).unwrap();
    nb.write("note.md", "v2");
    fs::remove_file(nb.path("note.md~")).unwrap();
    fs::remove_file(nb.path(".note.md.swp")).unwrap();
    nb.wait_changed(&["note.md"]);
    nb.barrier();
    assert_eq!(nb.changed_besides_sentinels(), set(&["note.md"]));
}

#[test]
fn a_file_rename_reports_both_sides() {
    let mut nb = notebook(&["sub"], &[("a.md", "a")], &[]);
    nb.barrier();
    nb.clear();
    fs::rename(nb.path("a.md"), nb.path("sub/b.md")).unwrap();
    nb.wait_changed(&["a.md", "sub/b.md"]);
}

#[test]
fn a_directory_rename_reports_the_old_dir_and_the_files_under_the_new_one() {
    let mut nb = notebook(&[], &[("docs/a.md", "a"), ("docs/sub/b.md", "b")], &[]);
    let before = nb.count();
    assert_eq!(before, 3);
    fs::rename(nb.path("docs"), nb.path("documents")).unwrap();
    nb.wait_changed(&["docs", "documents/a.md", "documents/sub/b.md"]);
    assert_eq!(nb.count(), before, "old watches forgotten, new ones added");
    nb.clear();
    nb.write("documents/sub/c.md", "c");
    nb.wait_changed(&["documents/sub/c.md"]);
}

#[test]
fn a_removed_directory_is_reported_and_its_watches_forgotten() {
    let mut nb = notebook(&[], &[("gone/x/a.md", "a"), ("keep.md", "k")], &[]);
    assert_eq!(nb.count(), 3);
    fs::remove_dir_all(nb.path("gone")).unwrap();
    nb.wait_changed(&["gone"]);
    assert_eq!(nb.count(), 1);
    // Recreated at once under the same name: watched again.
    nb.clear();
    fs::create_dir_all(nb.path("gone/x")).unwrap();
    nb.write("gone/x/b.md", "b");
    nb.wait_changed(&["gone/x/b.md"]);
    assert_eq!(nb.count(), 3);
}

#[test]
fn a_gitignore_change_asks_for_a_rescan_and_watches_newly_tracked_dirs() {
    let mut nb = notebook(&["later/sub"], &[(".gitignore", "later/\n")], &[]);
    assert_eq!(nb.count(), 1);
    nb.write(".gitignore", "# nothing ignored now\n");
    nb.wait_for("a rescan after the .gitignore change", |nb| {
        !nb.rescans().is_empty()
    });
    assert!(nb.changed.contains(Path::new(".gitignore")));
    assert_eq!(nb.count(), 3);
    nb.clear();
    nb.write("later/sub/n.md", "n");
    nb.wait_changed(&["later/sub/n.md"]);
    // Ignored again: its watches are given back.
    nb.clear();
    nb.write(".gitignore", "later/\n");
    nb.wait_for("a rescan after the second .gitignore change", |nb| {
        !nb.rescans().is_empty()
    });
    assert_eq!(nb.count(), 1);
}

#[test]
fn a_repository_created_inside_the_notebook_is_not_watched() {
    let mut nb = notebook(&[], &[], &[]);
    fs::create_dir(nb.path("clone")).unwrap();
    nb.write("clone/readme.md", "r");
    nb.wait_changed(&["clone/readme.md"]);
    assert_eq!(nb.count(), 2);
    git2::Repository::init(nb.path("clone")).unwrap();
    nb.barrier();
    assert_eq!(nb.count(), 1, "nested repository unwatched");
}

#[test]
fn every_file_of_a_bulk_copy_into_a_new_directory_is_reported() {
    let mut nb = notebook(&[], &[], &[]);
    fs::create_dir(nb.path("bulk")).unwrap();
    let names: Vec<String> = (0..500).map(|i| format!("bulk/f{i}.md")).collect();
    for name in &names {
        nb.write(name, "x");
    }
    let wanted: Vec<&str> = names.iter().map(String::as_str).collect();
    nb.wait_changed(&wanted);
    assert!(nb.rescans().is_empty(), "{:?}", nb.rescans());
}

#[test]
fn moving_a_directory_out_of_or_into_an_ignored_tree() {
    let mut nb = notebook(
        &["node_modules/pkg/lib"],
        &[
            (".gitignore", "node_modules/\n"),
            ("node_modules/pkg/lib/a.js", "a"),
            ("docs/d.md", "d"),
        ],
        &[],
    );
    assert_eq!(nb.count(), 2);
    // Out of the ignored tree: arrives as a move-in, its files are reported.
    fs::rename(nb.path("node_modules/pkg"), nb.path("pkg")).unwrap();
    nb.wait_changed(&["pkg/lib/a.js"]);
    assert_eq!(nb.count(), 4);
    // Into it: the old side is reported (its files are deletions), nothing is watched there.
    nb.clear();
    fs::rename(nb.path("docs"), nb.path("node_modules/docs")).unwrap();
    nb.wait_changed(&["docs"]);
    assert_eq!(nb.count(), 3);
    nb.barrier();
    assert_eq!(nb.changed_besides_sentinels(), set(&["docs"]));
}

#[test]
fn a_file_written_continuously_is_reported_while_it_is_still_being_written() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut nb = notebook(&[], &[("log.md", "")], &[]);
    nb.barrier();
    nb.clear();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (path, stop) = (nb.path("log.md"), stop.clone());
        std::thread::spawn(move || {
            let mut file = fs::OpenOptions::new().append(true).open(path).unwrap();
            let until = Instant::now() + DEADLINE;
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                std::io::Write::write_all(&mut file, b"line\n").unwrap();
                // Pacing the writer, not synchronising: faster than the 100 ms batch window.
                std::thread::sleep(Duration::from_millis(20));
            }
            stop.load(Ordering::Relaxed)
        })
    };
    nb.wait_changed(&["log.md"]);
    stop.store(true, Ordering::Relaxed);
    assert!(
        writer.join().unwrap(),
        "the event must arrive before the writer stops (no trailing-edge starvation)"
    );
}

#[test]
fn stop_is_prompt_and_closes_the_channel() {
    let mut nb = notebook(&["a"], &[], &[]);
    let started = Instant::now();
    nb.watcher.take().unwrap().stop();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        started.elapsed()
    );
    let closed = nb
        .rt
        .block_on(async { tokio::time::timeout(DEADLINE, nb.rx.recv()).await });
    assert_eq!(closed, Ok(None), "no sender may outlive the watcher");
}

#[test]
fn start_fails_cleanly_without_a_root_or_a_repository() {
    let dir = temp_root();
    let filter = Arc::new(PathFilter::default());
    let (tx, _rx) = channel(gitlockd::watch::NOTEBOOK_QUEUE);
    let missing = dir.path().join("missing");
    let err = NotebookWatcher::start("t", &missing, filter.clone(), tx.clone()).unwrap_err();
    assert!(matches!(err, WatchError::RootMissing { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
    let err = NotebookWatcher::start("t", dir.path(), filter, tx).unwrap_err();
    assert!(matches!(err, WatchError::Repository { .. }), "{err}");
}

/// Measures start on a generated tree: `WATCH_DIRS=20000 cargo test --test watch -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_start_on_a_big_tree() {
    let n: usize = std::env::var("WATCH_DIRS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let ignored: usize = n / 2;
    let dir = temp_root();
    let root = dir.path().canonicalize().unwrap();
    git2::Repository::init(&root).unwrap();
    fs::write(root.join(".gitignore"), "node_modules/\n").unwrap();
    let setup = Instant::now();
    for i in 0..n {
        fs::create_dir_all(root.join(format!("d{}/e{i}", i / 100))).unwrap();
        fs::write(root.join(format!("d{}/e{i}/n.md", i / 100)), "x").unwrap();
    }
    for i in 0..ignored {
        fs::create_dir_all(root.join(format!("node_modules/p{}/q{i}", i / 100))).unwrap();
    }
    println!("tree created in {:?}", setup.elapsed());
    let (tx, _rx) = channel(gitlockd::watch::NOTEBOOK_QUEUE);
    let started = Instant::now();
    let watcher =
        NotebookWatcher::start("big", &root, Arc::new(PathFilter::default()), tx).unwrap();
    let took = started.elapsed();
    println!(
        "{n} watched dirs (+{} parents), {ignored} ignored: {} watches, start {took:?}",
        n.div_ceil(100),
        watcher.watch_count()
    );
    let started = Instant::now();
    watcher.stop();
    println!("stop {:?}", started.elapsed());
}
