//! Unit tests of the watcher's pump, tree walks and limit messages.
#![allow(clippy::unwrap_used)]

use std::time::SystemTime;

use notify::event::CreateKind;
use notify::{Event, EventKind};

use super::limits::*;
use super::pump::*;
use super::tree::*;
use super::*;

fn max_files_error(dir: &str) -> notify::Error {
    notify::Error::new(notify::ErrorKind::MaxFilesWatch).add_path(PathBuf::from(dir))
}

#[test]
fn max_files_watch_becomes_a_rescan_naming_the_limit_and_the_fix() {
    let events = errors_to_events(&[max_files_error("/nb/deep/dir")]);
    assert_eq!(events.len(), 1, "{events:?}");
    let WatchEvent::Rescan { reason } = &events[0] else {
        panic!("expected a rescan, got {events:?}");
    };
    for needle in [
        "/nb/deep/dir",
        "max_user_watches is ",
        "/proc/sys/fs/inotify/max_user_watches",
        "sysctl fs.inotify.max_user_watches=",
    ] {
        assert!(reason.contains(needle), "{needle:?} missing from {reason}");
    }
    if let Some(limit) = read_proc_limit("max_user_watches") {
        assert!(reason.contains(&format!("is {limit} ")), "{reason}");
    }
}

#[test]
fn repeated_limit_errors_collapse_and_other_errors_map_by_loss() {
    let io = notify::Error::io(io::Error::other("read failed"));
    let gone = notify::Error::path_not_found().add_path(PathBuf::from("/nb/x"));
    let events = errors_to_events(&[max_files_error("/nb/a"), max_files_error("/nb/a"), io, gone]);
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(matches!(&events[1], WatchEvent::Rescan { reason } if reason.contains("read failed")));
    assert!(matches!(&events[2], WatchEvent::Error(e) if e.contains("/nb/x")));
}

#[test]
fn a_full_raw_queue_drops_and_flags_and_the_pump_rescans() {
    let (tx, rx) = mpsc::sync_channel(2);
    let dropped = Arc::new(AtomicBool::new(false));
    let forward = raw_forwarder(tx, dropped.clone());
    let event = || Ok(Event::new(EventKind::Create(CreateKind::File)));
    forward(event());
    forward(event());
    assert!(!dropped.load(Ordering::SeqCst));
    forward(event());
    assert!(
        dropped.load(Ordering::SeqCst),
        "the third event found the queue full"
    );
    assert_eq!(
        rx.try_iter().count(),
        2,
        "nothing beyond the bound is queued"
    );

    let (mut pump, _nb_rx, _dir) = test_pump(4);
    let mut batch = Batch::default();
    pump.handle_batch(Vec::new(), Vec::new(), true, false, &mut batch);
    assert!(
        batch
            .rescans
            .iter()
            .any(|r| r.contains("event queue was full")),
        "{:?}",
        batch.rescans
    );
}

#[test]
fn a_full_notebook_queue_holds_batches_and_delivers_them_all() {
    let (mut pump, mut rx, _dir) = test_pump(1);
    let changed = |names: &[&str]| Batch {
        changed: names.iter().map(PathBuf::from).collect(),
        ..Batch::default()
    };
    assert!(pump.deliver(changed(&["a"])));
    // The queue (one slot) is full: held, and merged with what follows.
    assert!(pump.deliver(changed(&["b"])));
    assert!(pump.deliver(Batch {
        degraded: Some("limit".into()),
        ..changed(&["c", "b"])
    }));
    let paths = |event: WatchEvent| match event {
        WatchEvent::Changed { paths, .. } => paths,
        other => panic!("expected Changed, got {other:?}"),
    };
    assert_eq!(paths(rx.try_recv().unwrap()), vec![PathBuf::from("a")]);
    assert!(rx.try_recv().is_err());
    assert!(pump.deliver(Batch::default()));
    assert_eq!(
        paths(rx.try_recv().unwrap()),
        vec![PathBuf::from("b"), PathBuf::from("c")]
    );
    assert!(pump.deliver(Batch::default()));
    assert_eq!(
        rx.try_recv().unwrap(),
        WatchEvent::Degraded {
            reason: "limit".into()
        }
    );
    assert!(pump.held.is_empty());
    drop(rx);
    assert!(
        !pump.deliver(changed(&["d"])),
        "a closed queue ends the pump"
    );
}

/// A pump over a fresh repository, sending into a queue of `capacity`.
fn test_pump(
    capacity: usize,
) -> (
    Pump,
    tokio::sync::mpsc::Receiver<WatchEvent>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let repo = git2::Repository::init(&root).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(capacity);
    let inotify = RecommendedWatcher::new(|_| {}, Config::default()).unwrap();
    let tracked_ignored = RefCell::new(TrackedIgnored::new(&root, repo.path()));
    let pump = Pump {
        tracked_ignored,
        root,
        filter: Arc::new(PathFilter::default()),
        repo,
        inotify,
        watched: BTreeSet::new(),
        watch_count: Arc::new(AtomicUsize::new(0)),
        stopping: Arc::new(AtomicBool::new(false)),
        raw_dropped: Arc::new(AtomicBool::new(false)),
        tx,
        held: Batch::default(),
        degraded: false,
        limit_reached: false,
        watch_limit: None,
    };
    (pump, rx, dir)
}

#[test]
fn a_file_found_by_a_walk_is_dated_by_its_mtime() {
    let (now_wall, now) = (SystemTime::now(), Instant::now());
    let at = instant_of(now_wall - Duration::from_secs(2)).unwrap();
    let age = now.saturating_duration_since(at);
    assert!(
        age >= Duration::from_millis(1990) && age <= Duration::from_millis(2500),
        "{age:?}"
    );
    assert_eq!(instant_of(now_wall + Duration::from_secs(60)), None);
}

#[test]
fn a_watch_already_gone_is_not_a_problem() {
    let gone = notify::Error::watch_not_found().add_path(PathBuf::from("/nb/deleted"));
    assert_eq!(errors_to_events(&[gone]), Vec::new());
}

#[test]
fn git_ignore_checks_cover_directory_patterns_and_vanished_paths() {
    let dir = tempfile::tempdir().unwrap();
    let repo = git2::Repository::init(dir.path()).unwrap();
    fs::write(dir.path().join(".gitignore"), "node_modules/\nbuild\n").unwrap();
    fs::create_dir_all(dir.path().join("node_modules/pkg")).unwrap();
    fs::create_dir_all(dir.path().join("build")).unwrap();
    fs::create_dir_all(dir.path().join("src")).unwrap();
    let ignored = |rel: &str, vanished_dir: bool| git_ignores(&repo, Path::new(rel), vanished_dir);
    // Existing directories: libgit2 stats them, the plain form suffices.
    assert!(ignored("node_modules", false));
    assert!(ignored("build", false));
    assert!(
        ignored("node_modules/pkg/index.js", false),
        "below an ignored dir"
    );
    assert!(!ignored("src", false));
    assert!(!ignored("src/a.md", false));
    fs::remove_dir_all(dir.path().join("node_modules")).unwrap();
    // Vanished: a `dir/` pattern only matches when told it was a directory.
    assert!(!repo.is_path_ignored("node_modules").unwrap());
    assert!(ignored("node_modules", true));
    assert!(ignored("node_modules/pkg/gone.js", false));
    // A plain pattern matches files and directories alike.
    assert!(ignored("build", false));
    assert!(ignored("deeper/build", false));
    // A *file* named like a directory-only pattern is not ignored.
    assert!(!ignored("node_modules", false));
}

#[test]
fn watcher_can_live_in_async_state() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<NotebookWatcher>();
    send_sync::<WatchEvent>();
}

#[test]
fn reasons_suggest_a_higher_limit() {
    assert!(max_watches_reason("/d", Some(8192)).contains("max_user_watches=524288"));
    assert!(max_watches_reason("/d", Some(600_000)).contains("max_user_watches=1200000"));
    assert!(max_watches_reason("/d", None).contains("is unknown"));
    assert!(overflow_reason(Some(16384)).starts_with("event queue overflow"));
}

#[test]
fn emfile_at_init_names_the_instance_limit() {
    let err = init_error(
        Path::new("/nb"),
        notify::Error::io(io::Error::from_raw_os_error(libc::EMFILE)),
    );
    let text = err.to_string();
    assert!(matches!(err, WatchError::TooManyInstances { .. }), "{text}");
    assert!(
        text.contains("sysctl fs.inotify.max_user_instances="),
        "{text}"
    );
    let other = init_error(
        Path::new("/nb"),
        notify::Error::io(io::Error::from_raw_os_error(libc::ENOMEM)),
    );
    assert!(matches!(other, WatchError::Notify { .. }), "{other}");
}
