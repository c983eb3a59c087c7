//! The stager skips libgit2's ignore and attribute lookups where no
//! `.gitignore`/`.gitattributes` can apply, and stores such files' bytes
//! directly: what it stages must still be exactly what `git add` stages.
//! Referee: the same work tree staged by `git add` in a copy.

mod git_util;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use git_util::*;

/// A copy of the notebook (work tree and .git) made with `cp -a`.
fn copy_of(dir: &Path) -> tempfile::TempDir {
    let copy = tempdir();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", dir.display()))
        .arg(copy.path())
        .status()
        .expect("cp");
    assert!(status.success());
    copy
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// `git ls-files -s` (mode, blob, stage, path) of `dir`.
fn staged(dir: &Path) -> Vec<String> {
    lines(&git(dir, &["ls-files", "-s"]))
}

#[test]
fn a_new_folder_is_staged_as_git_add_stages_it() {
    let (dir, gm) = notebook();
    let d = dir.path();
    // Ignore rules only in a parent folder, none at the root.
    write(d, "notes/.gitignore", "*.log\nbuild/\n");
    write(d, "notes/keep.md", "k\n");
    gm.auto_commit_on_change(
        &[
            PathBuf::from("notes/.gitignore"),
            PathBuf::from("notes/keep.md"),
        ],
        &opts(),
    )
    .expect("first commit");

    // A burst of new files in new folders: below the ignore file and beside it.
    for i in 0..50 {
        write(d, &format!("notes/day/n{i:02}.md"), &format!("note {i}\n"));
        write(d, &format!("other/o{i:02}.md"), &format!("other {i}\n"));
    }
    write(d, "notes/day/run.log", "ignored\n");
    write(d, "notes/day/build/out.md", "ignored folder\n");
    write(d, "other/run.log", "not ignored here\n");
    let tool = write(d, "notes/day/tool.sh", "#!/bin/sh\n");
    chmod(&d.join(&tool), 0o755);
    // Only the group may execute: git stores 644 (the owner's bit decides).
    let group = write(d, "other/group.sh", "#!/bin/sh\n");
    chmod(&d.join(&group), 0o654);
    std::fs::write(d.join("other/crlf.txt"), "a\r\nb\r\n").expect("write");

    let copy = copy_of(d);
    let outcome = gm
        .auto_commit_on_change(
            &[PathBuf::from("notes/day"), PathBuf::from("other")],
            &opts(),
        )
        .expect("auto-commit");
    assert!(outcome.commit.is_some());
    assert!(
        outcome.git_features.is_empty(),
        "{:?}",
        outcome.git_features
    );
    git(copy.path(), &["add", "notes/day", "other"]);

    assert_eq!(staged(d), staged(copy.path()));
    let files = lines(&git(d, &["ls-tree", "-r", "--name-only", "HEAD"]));
    assert!(files.contains(&"other/run.log".to_string()));
    assert!(!files.iter().any(|f| f.starts_with("notes/day/build")));
    assert!(!files.contains(&"notes/day/run.log".to_string()));
    assert_fsck_clean(d);
    assert_status_clean(d);
    // The stat data recorded is the files' own (no refresh needed).
    assert_eq!(git(d, &["diff-files", "--name-only"]), "");
}

#[test]
fn an_attributes_file_only_in_the_index_still_applies() {
    let (dir, gm) = notebook();
    let d = dir.path();
    write(
        d,
        ".gitattributes",
        "*.u16 working-tree-encoding=UTF-16LE\n",
    );
    write(d, "a.md", "a\n");
    gm.auto_commit_on_change(
        &[PathBuf::from(".gitattributes"), PathBuf::from("a.md")],
        &opts(),
    )
    .expect("first commit");
    // Gone from the work tree but still staged: git and libgit2 read the
    // index's copy, so the encoding still applies.
    std::fs::remove_file(d.join(".gitattributes")).expect("rm");
    let text: Vec<u8> = "héllo\n"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    std::fs::create_dir(d.join("enc")).expect("mkdir");
    std::fs::write(d.join("enc/t.u16"), &text).expect("write");

    let copy = copy_of(d);
    let outcome = gm
        .auto_commit_on_change(&[PathBuf::from("enc")], &opts())
        .expect("auto-commit");
    assert_eq!(outcome.git_features, ["working-tree-encoding"]);
    git(copy.path(), &["add", "enc"]);
    assert_eq!(staged(d), staged(copy.path()));
    // Stored as UTF-8, as `git add` stores it.
    assert_eq!(git(d, &["show", "HEAD:enc/t.u16"]), "héllo\n");
    assert_fsck_clean(d);
}

#[test]
fn autocrlf_turns_off_the_raw_path() {
    let (dir, gm) = notebook();
    let d = dir.path();
    git(d, &["config", "core.autocrlf", "true"]);
    std::fs::create_dir(d.join("w")).expect("mkdir");
    std::fs::write(d.join("w/crlf.txt"), "a\r\nb\r\n").expect("write");
    let copy = copy_of(d);
    gm.auto_commit_on_change(&[PathBuf::from("w")], &opts())
        .expect("auto-commit");
    git(copy.path(), &["add", "w"]);
    assert_eq!(staged(d), staged(copy.path()));
    assert_eq!(git(d, &["show", "HEAD:w/crlf.txt"]), "a\nb\n");
}
