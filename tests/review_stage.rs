//! Safety review of the stager's shortcuts (sources.rs: no ignore or
//! attribute lookups where none can apply; stage.rs: small files staged
//! from a buffer): on awkward work trees, what gitlockd commits must be the
//! tree `git add -A && git write-tree` makes on a copy of the repository
//! taken just before gitlockd's commit.

mod git_util;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use git_util::*;
use gitlockd::git::{AutoCommitOutcome, GitManager};

/// The tree git makes of `d`'s work tree: `git add -A -- <spec>` and
/// `git write-tree` on a `cp -a` copy (the original is left untouched).
fn oracle_tree(d: &Path, spec: &[&str]) -> String {
    let copy = tempdir();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", d.display()))
        .arg(copy.path())
        .status()
        .expect("cp");
    assert!(status.success(), "cp -a of {}", d.display());
    let mut args = vec!["add", "-A", "--"];
    args.extend_from_slice(spec);
    git(copy.path(), &args);
    git(copy.path(), &["write-tree"]).trim().to_string()
}

/// The tree of HEAD.
fn head_tree(d: &Path) -> String {
    git(d, &["rev-parse", "HEAD^{tree}"]).trim().to_string()
}

/// `git ls-tree -r <rev>` (mode, type, blob, path) for a failure message
/// (an oracle's tree exists only in its copy: then git's complaint).
fn listing(d: &Path, rev: &str) -> String {
    let out = git_try(d, &["ls-tree", "-r", rev]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Auto-commits `paths` and checks HEAD's tree against `expected`.
fn commit_matches(d: &Path, gm: &GitManager, paths: &[PathBuf], expected: &str) {
    let outcome = gm
        .auto_commit_on_change(paths, &opts())
        .expect("auto-commit");
    assert!(outcome.recheck.is_empty(), "recheck: {outcome:?}");
    let ours = head_tree(d);
    assert_eq!(
        ours,
        expected,
        "gitlockd committed\n{}\ngit add -A makes\n{}",
        listing(d, "HEAD"),
        listing(d, expected)
    );
    assert_fsck_clean(d);
}

fn paths(list: &[&str]) -> Vec<PathBuf> {
    list.iter().map(PathBuf::from).collect()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A notebook with one committed file, so later rounds start from a HEAD.
fn started() -> (tempfile::TempDir, GitManager) {
    let (dir, gm) = notebook();
    write(dir.path(), "base.md", "base\n");
    auto(&gm, &["base.md"]);
    (dir, gm)
}

#[test]
fn ignore_sources_set_between_rounds_are_honoured() {
    let (dir, gm) = started();
    let d = dir.path();
    // The first round saw no repository-wide ignore source; now three appear.
    write(d, ".git/info/exclude", "# comment\n*.one\n");
    let excludes = tempdir();
    std::fs::write(excludes.path().join("ignore"), "*.two\n").expect("write");
    git(
        d,
        &[
            "config",
            "core.excludesFile",
            excludes.path().join("ignore").to_str().expect("utf-8"),
        ],
    );
    for rel in ["a.one", "b.two", "c.md", "n/a.one", "n/b.two", "n/c.md"] {
        write(d, rel, "x\n");
    }
    let expected = oracle_tree(d, &["."]);
    commit_matches(d, &gm, &paths(&["a.one", "b.two", "c.md", "n"]), &expected);
    let files = git(d, &["ls-tree", "-r", "--name-only", "HEAD"]);
    assert!(
        !files.contains(".one") && !files.contains(".two"),
        "{files}"
    );
}

#[test]
fn an_ignore_file_created_with_the_files_it_ignores_applies_to_them() {
    let (dir, gm) = started();
    let d = dir.path();
    write(d, "x.log", "log\n");
    write(d, "keep.md", "k\n");
    write(d, ".gitignore", "*.log\nout/\n");
    write(d, "out/y.md", "y\n");
    // In a new folder staged as a whole: the listing order is the disk's.
    for i in 0..20 {
        write(d, &format!("sub/f{i:02}.tmp"), "t\n");
        write(d, &format!("sub/f{i:02}.md"), "m\n");
    }
    write(d, "sub/.gitignore", "*.tmp\n");
    let expected = oracle_tree(d, &["."]);
    // The files before the ignore file in the batch, in both orders.
    commit_matches(
        d,
        &gm,
        &paths(&["x.log", "out/y.md", "keep.md", ".gitignore", "sub"]),
        &expected,
    );
}

#[test]
fn an_attributes_file_created_with_the_files_it_converts_applies_to_them() {
    let (dir, gm) = started();
    let d = dir.path();
    std::fs::write(d.join("a.txt"), "one\r\ntwo\r\n").expect("write");
    std::fs::write(d.join("raw.dat"), "one\r\ntwo\r\n").expect("write");
    write(d, ".gitattributes", "*.txt text eol=lf\n");
    std::fs::create_dir(d.join("auto")).expect("mkdir");
    for i in 0..10 {
        std::fs::write(d.join(format!("auto/t{i}.md")), "a\r\nb\r\n").expect("write");
    }
    write(d, "auto/.gitattributes", "* text=auto\n");
    let expected = oracle_tree(d, &["."]);
    commit_matches(
        d,
        &gm,
        &paths(&["a.txt", "raw.dat", ".gitattributes", "auto"]),
        &expected,
    );
    assert_eq!(git(d, &["show", "HEAD:a.txt"]), "one\ntwo\n");
    assert_eq!(git(d, &["show", "HEAD:auto/t3.md"]), "a\nb\n");
    assert_eq!(git(d, &["show", "HEAD:raw.dat"]), "one\r\ntwo\r\n");
}

#[test]
fn a_text_attribute_only_in_the_index_still_converts() {
    let (dir, gm) = started();
    let d = dir.path();
    write(d, ".gitattributes", "*.txt text\n");
    auto(&gm, &[".gitattributes"]);
    // Deleted from the work tree, still in the index (and in HEAD).
    std::fs::remove_file(d.join(".gitattributes")).expect("rm");
    std::fs::create_dir(d.join("w")).expect("mkdir");
    std::fs::write(d.join("w/t.txt"), "a\r\nb\r\n").expect("write");
    let expected = oracle_tree(d, &["w"]);
    commit_matches(d, &gm, &paths(&["w"]), &expected);
    assert_eq!(git(d, &["show", "HEAD:w/t.txt"]), "a\nb\n");
}

#[test]
fn autocrlf_input_and_eol_settings_convert_as_git_does() {
    let (dir, gm) = started();
    let d = dir.path();
    git(d, &["config", "core.autocrlf", "input"]);
    git(d, &["config", "core.eol", "crlf"]);
    std::fs::create_dir(d.join("w")).expect("mkdir");
    std::fs::write(d.join("w/crlf.md"), "a\r\nb\r\n").expect("write");
    std::fs::write(d.join("w/mixed.md"), "a\r\nb\n").expect("write");
    std::fs::write(d.join("w/bin.dat"), b"\0\r\n\x01").expect("write");
    std::fs::write(d.join("top.md"), "x\r\n").expect("write");
    let expected = oracle_tree(d, &["."]);
    commit_matches(d, &gm, &paths(&["w", "top.md"]), &expected);
}

#[test]
fn symlinks_are_stored_as_links_never_followed() {
    let (dir, gm) = started();
    let d = dir.path();
    let outside = tempdir();
    std::fs::write(outside.path().join("secret"), "outside\n").expect("write");
    write(d, "real/inside.md", "in\n");
    symlink("real/inside.md", d.join("to_file")).expect("ln");
    symlink("real", d.join("to_dir")).expect("ln");
    symlink("nowhere", d.join("dangling")).expect("ln");
    symlink(outside.path(), d.join("to_outside")).expect("ln");
    symlink(outside.path().join("secret"), d.join("secret_link")).expect("ln");
    std::fs::create_dir(d.join("links")).expect("mkdir");
    symlink("../real", d.join("links/up")).expect("ln");
    symlink("/etc/passwd", d.join("links/passwd")).expect("ln");
    let expected = oracle_tree(d, &["."]);
    commit_matches(
        d,
        &gm,
        &paths(&[
            "real",
            "to_file",
            "to_dir",
            "dangling",
            "to_outside",
            "secret_link",
            "links",
            // Paths beyond a symlink: never staged as such.
            "to_outside/secret",
            "to_dir/inside.md",
        ]),
        &expected,
    );
    for link in ["to_file", "to_dir", "to_outside", "links/passwd"] {
        let line = git(d, &["ls-tree", "HEAD", link]);
        assert!(line.starts_with("120000 "), "{link}: {line}");
    }
    let files = git(d, &["ls-tree", "-r", "--name-only", "HEAD"]);
    assert!(
        !files.contains("secret\n") && !files.contains("to_dir/"),
        "{files}"
    );
}

/// Runs `f` on another thread: its result, or a failure naming `what` when
/// it takes longer than 60 s (a read of a FIFO blocks forever).
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} did not finish within 60 s (blocked on a FIFO?)"))
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("c path");
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

#[test]
fn fifos_and_sockets_are_left_out_without_blocking() {
    let (dir, gm) = started();
    let d = dir.path().to_path_buf();
    std::fs::create_dir(d.join("s")).expect("mkdir");
    mkfifo(&d.join("s/pipe"));
    mkfifo(&d.join("pipe"));
    let _sock = std::os::unix::net::UnixListener::bind(d.join("s/sock")).expect("bind");
    write(&d, "s/note.md", "n\n");
    write(&d, "top.md", "t\n");
    let expected = oracle_tree(&d, &["."]);
    let gm2 = gm.clone();
    let outcome: AutoCommitOutcome = within("an auto-commit next to a FIFO", move || {
        gm2.auto_commit_on_change(
            &paths(&["s", "s/pipe", "s/sock", "pipe", "top.md"]),
            &opts(),
        )
        .expect("auto-commit")
    });
    assert!(outcome.commit.is_some());
    assert_eq!(head_tree(&d), expected, "{}", listing(&d, "HEAD"));
    // The whole-tree commit (`gitlockd commit`) too.
    write(&d, "s/more.md", "m\n");
    mkfifo(&d.join("s/pipe2"));
    let expected = oracle_tree(&d, &["."]);
    let gm3 = gm.clone();
    within("a commit of everything next to a FIFO", move || {
        gm3.commit("all", None).expect("commit")
    });
    assert_eq!(head_tree(&d), expected, "{}", listing(&d, "HEAD"));
    assert_fsck_clean(&d);
}

#[test]
fn execute_bits_are_recorded_as_git_records_them() {
    let (dir, gm) = started();
    let d = dir.path();
    write(d, "run.sh", "#!/bin/sh\n");
    write(d, "was_exec.sh", "#!/bin/sh\n");
    chmod(&d.join("was_exec.sh"), 0o755);
    auto(&gm, &["run.sh", "was_exec.sh"]);
    chmod(&d.join("run.sh"), 0o744);
    chmod(&d.join("was_exec.sh"), 0o644);
    write(d, "new/group.sh", "g\n");
    chmod(&d.join("new/group.sh"), 0o654);
    write(d, "new/owner.sh", "o\n");
    chmod(&d.join("new/owner.sh"), 0o700);
    let expected = oracle_tree(d, &["."]);
    commit_matches(d, &gm, &paths(&["run.sh", "was_exec.sh", "new"]), &expected);
    assert_eq!(
        git(d, &["ls-tree", "HEAD", "run.sh"]).get(..6),
        Some("100755")
    );
}

#[test]
fn a_file_replaced_by_a_folder_and_back_is_committed_as_git_adds_it() {
    let (dir, gm) = started();
    let d = dir.path();
    write(d, "a", "file a\n");
    write(d, "b/c.md", "c\n");
    write(d, "b/d/e.md", "e\n");
    auto(&gm, &["a", "b"]);
    std::fs::remove_file(d.join("a")).expect("rm");
    write(d, "a/x.md", "x\n");
    std::fs::remove_dir_all(d.join("b")).expect("rm -r");
    write(d, "b", "file b\n");
    let expected = oracle_tree(d, &["."]);
    // The events a watcher reports: the deletions, the creations, the child.
    commit_matches(
        d,
        &gm,
        &paths(&["a", "a/x.md", "b", "b/c.md", "b/d/e.md"]),
        &expected,
    );
    assert_status_clean(d);
    // And back again, named by the parents only.
    std::fs::remove_dir_all(d.join("a")).expect("rm -r");
    write(d, "a", "file a again\n");
    std::fs::remove_file(d.join("b")).expect("rm");
    write(d, "b/new.md", "n\n");
    let expected = oracle_tree(d, &["."]);
    commit_matches(d, &gm, &paths(&["a", "b"]), &expected);
    assert_status_clean(d);
}

#[test]
fn nested_repositories_and_submodules_are_never_staged() {
    let (dir, gm) = started();
    let d = dir.path();
    // A nested repository with its own history, created as a new folder.
    let inner = d.join("inner");
    std::fs::create_dir(&inner).expect("mkdir");
    git(&inner, &["init", "-q"]);
    write(&inner, "f.md", "inner\n");
    git(&inner, &["add", "f.md"]);
    git(&inner, &["commit", "-q", "-m", "inner"]);
    write(d, "outer.md", "o\n");
    let before = git(&inner, &["rev-parse", "HEAD"]);
    auto(
        &gm,
        &["inner", "inner/f.md", "inner/.git/index", "outer.md"],
    );
    let files = git(d, &["ls-tree", "-r", "HEAD"]);
    assert!(!files.contains("inner"), "{files}");
    assert!(files.contains("outer.md"), "{files}");
    // A submodule (gitlink in the index): its files are not ours either.
    git(
        d,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{},inner", before.trim()),
        ],
    );
    git(d, &["commit", "-q", "-m", "submodule"]);
    write(&inner, "f.md", "changed inside\n");
    write(&inner, "g.md", "new inside\n");
    let head = git(d, &["rev-parse", "HEAD"]);
    let outcome = auto(&gm, &["inner", "inner/f.md", "inner/g.md"]);
    assert_eq!(outcome.commit, None, "{outcome:?}");
    assert_eq!(git(d, &["rev-parse", "HEAD"]), head);
    assert_eq!(
        git(d, &["ls-files", "-s", "inner"]).get(..6),
        Some("160000")
    );
    assert_eq!(
        git(&inner, &["status", "--porcelain"]),
        " M f.md\n?? g.md\n"
    );
    assert_fsck_clean(d);
    assert_fsck_clean(&inner);
}

#[test]
fn names_with_newlines_and_non_utf8_bytes_are_committed_as_git_adds_them() {
    let (dir, gm) = started();
    let d = dir.path();
    let names: Vec<&[u8]> = vec![
        b"new\nline.md",
        b"caf\xe9.md",
        b"tab\there.md",
        b"-dash.md",
        b" space .md",
        b"back\\slash.md",
        b"quote\".md",
        b"star*.md",
    ];
    std::fs::create_dir(d.join("odd")).expect("mkdir");
    let mut batch = vec![PathBuf::from("odd")];
    for (i, name) in names.iter().enumerate() {
        let name = OsStr::from_bytes(name);
        std::fs::write(d.join(name), format!("top {i}\n")).expect("write");
        std::fs::write(d.join("odd").join(name), format!("odd {i}\n")).expect("write");
        batch.push(PathBuf::from(name));
    }
    let expected = oracle_tree(d, &["."]);
    commit_matches(d, &gm, &batch, &expected);
    assert_status_clean(d);
    // Deleted again, named one by one.
    for name in &names {
        std::fs::remove_file(d.join(OsStr::from_bytes(name))).expect("rm");
    }
    let expected = oracle_tree(d, &["."]);
    commit_matches(d, &gm, &batch[1..], &expected);
    assert_status_clean(d);
}

/// Swaps `f.md` for a FIFO and back without pause while `gm` commits it
/// `rounds` times (plain and overdue); fails when a commit blocks.
/// `errors_ok`: the git route may refuse a FIFO (`git add` does), or be
/// stopped by gitlockd's timeout (`git add` itself can block on the FIFO),
/// but must not hang.
fn commits_next_to_a_fifo_swap(d: &Path, gm: &GitManager, rounds: u32, errors_ok: bool) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (d, stop) = (d.to_path_buf(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let tmp = d.join(format!("swap{}", n % 2));
                let _ = std::fs::remove_file(&tmp);
                if n.is_multiple_of(2) {
                    mkfifo(&tmp);
                } else {
                    std::fs::write(&tmp, format!("version {n}\n")).expect("write");
                }
                std::fs::rename(&tmp, d.join("f.md")).expect("rename");
            }
        })
    };
    let gm2 = gm.clone();
    let result = within("auto-commits of a file swapped for a FIFO", move || {
        for _ in 0..rounds {
            for overdue in [false, true] {
                let rel = paths(&["f.md"]);
                let done = if overdue {
                    gm2.auto_commit_overdue(&rel, &opts())
                } else {
                    gm2.auto_commit_on_change(&rel, &opts())
                };
                match done {
                    Ok(_) => {}
                    Err(_) if errors_ok => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok::<(), gitlockd::git::GitError>(())
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    swapper.join().expect("swapper");
    result.expect("auto-commits");
    // Whatever was committed is a version the file had.
    let blob = git(d, &["show", "HEAD:f.md"]);
    assert!(blob == "file\n" || blob.starts_with("version "), "{blob:?}");
    assert_fsck_clean(d);
}

#[test]
fn a_file_swapped_for_a_fifo_while_staged_never_blocks_the_commit() {
    // A stager that read the path after looking at it as a regular file
    // would open the FIFO and wait forever for a writer.
    let (dir, gm) = started();
    let d = dir.path().to_path_buf();
    write(&d, "f.md", "file\n");
    auto(&gm, &["f.md"]);
    commits_next_to_a_fifo_swap(&d, &gm, 300, false);
}

#[test]
fn on_the_git_route_a_file_swapped_for_a_fifo_never_blocks_the_commit() {
    let (dir, gm) = started();
    let d = dir.path().to_path_buf();
    write(&d, "f.md", "file\n");
    auto(&gm, &["f.md"]);
    // A pre-commit hook sends every commit through `git`.
    write(&d, ".git/hooks/pre-commit", "#!/bin/sh\nexit 0\n");
    chmod(&d.join(".git/hooks/pre-commit"), 0o755);
    let gm = gm.with_git_program(gitlockd::git::GitProgram {
        timeout: Duration::from_secs(1),
        ..program()
    });
    commits_next_to_a_fifo_swap(&d, &gm, 40, true);
}

#[test]
fn attribute_sources_set_between_rounds_are_honoured() {
    let (dir, gm) = started();
    let d = dir.path();
    // The first round saw no repository-wide attributes; now two appear.
    write(d, ".git/info/attributes", "*.lf text eol=lf\n");
    let attrs = tempdir();
    std::fs::write(attrs.path().join("attributes"), "*.auto text=auto\n").expect("write");
    git(
        d,
        &[
            "config",
            "core.attributesFile",
            attrs.path().join("attributes").to_str().expect("utf-8"),
        ],
    );
    std::fs::create_dir(d.join("n")).expect("mkdir");
    for rel in ["a.lf", "b.auto", "c.md", "n/a.lf", "n/b.auto", "n/c.md"] {
        std::fs::write(d.join(rel), "x\r\ny\r\n").expect("write");
    }
    let expected = oracle_tree(d, &["."]);
    commit_matches(d, &gm, &paths(&["a.lf", "b.auto", "c.md", "n"]), &expected);
    assert_eq!(git(d, &["show", "HEAD:n/b.auto"]), "x\ny\n");
    assert_eq!(git(d, &["show", "HEAD:c.md"]), "x\r\ny\r\n");
}

#[test]
fn without_core_symlinks_a_tracked_link_stays_a_link() {
    // core.symlinks=false (a checkout on a filesystem without symlinks):
    // the link is a plain file holding its target, and `git add` keeps the
    // entry a link when that file changes.
    let (dir, gm) = started();
    let d = dir.path();
    git(d, &["config", "core.symlinks", "false"]);
    write(d, "link", "base.md");
    let blob = git(d, &["hash-object", "-w", "link"]);
    git(
        d,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("120000,{},link", blob.trim()),
        ],
    );
    git(d, &["commit", "-q", "-m", "a link"]);
    write(d, "link", "other.md");
    let expected = oracle_tree(d, &["."]);
    commit_matches(d, &gm, &paths(&["link"]), &expected);
    assert_eq!(
        git(d, &["ls-tree", "HEAD", "link"]).get(..6),
        Some("120000")
    );
}

#[test]
fn without_core_symlinks_a_commit_of_everything_keeps_a_tracked_link_a_link() {
    let (dir, gm) = started();
    let d = dir.path();
    git(d, &["config", "core.symlinks", "false"]);
    write(d, "link", "base.md");
    let blob = git(d, &["hash-object", "-w", "link"]);
    git(
        d,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("120000,{},link", blob.trim()),
        ],
    );
    git(d, &["commit", "-q", "-m", "a link"]);
    write(d, "link", "other.md");
    write(d, "new.md", "n\n");
    let expected = oracle_tree(d, &["."]);
    gm.commit("everything", None).expect("commit");
    assert_eq!(head_tree(d), expected, "{}", listing(d, "HEAD"));
}
