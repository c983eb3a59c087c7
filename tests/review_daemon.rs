//! Safety review, through the real daemon: repository-wide ignore sources
//! (the XDG `git/ignore`, a `core.excludesFile` in the global config)
//! created while the daemon runs apply to the next files it commits, as
//! `git add -A` applies them.

mod support;

use support::*;

/// git, as referee, agrees with what the daemon committed: no file left
/// untracked that git would add, no committed file that git ignores.
fn git_agrees(nb: &Repo) {
    nb.assert_head_stays(QUIET, "nothing more to commit");
    let left = nb.git(&["ls-files", "--others", "--exclude-standard"]);
    assert_eq!(left, "", "files git would add were left out");
    let ignored = nb.git(&["ls-files", "--cached", "--ignored", "--exclude-standard"]);
    assert_eq!(ignored, "", "files git ignores were committed");
    nb.assert_fsck_clean();
}

#[test]
fn global_ignore_files_created_while_the_daemon_runs_apply() {
    let (sb, nb, _d) = one_with_base("");
    // $XDG_CONFIG_HOME/git/ignore, created after start-up (the default of
    // core.excludesFile, which is unset).
    let xdg = sb.root.join("cfg/git");
    std::fs::create_dir_all(&xdg).unwrap();
    std::fs::write(xdg.join("ignore"), "*.secret\n").unwrap();
    nb.write("a.secret", "s\n");
    nb.write("new/c.secret", "s\n");
    nb.write("new/e.md", "e\n");
    nb.write("f.md", "f\n");
    committed(&nb, "f.md", "f\n");
    committed(&nb, "new/e.md", "e\n");
    git_agrees(&nb);
    let files = nb.git(&["ls-tree", "-r", "--name-only", "HEAD"]);
    assert!(!files.contains(".secret"), "{files}");

    // core.excludesFile set in the global config: it replaces the XDG file
    // (so it repeats its rule: the .secret files are still untracked).
    let excludes = sb.root.join("home/excludes");
    std::fs::write(&excludes, "*.secret\n*.private\n").unwrap();
    nb.git(&[
        "config",
        "--global",
        "core.excludesFile",
        excludes.to_str().unwrap(),
    ]);
    nb.write("b.private", "p\n");
    nb.write("more/d.private", "p\n");
    nb.write("more/g.md", "g\n");
    nb.write("h.md", "h\n");
    committed(&nb, "h.md", "h\n");
    committed(&nb, "more/g.md", "g\n");
    git_agrees(&nb);
    let files = nb.git(&["ls-tree", "-r", "--name-only", "HEAD"]);
    assert!(!files.contains(".private"), "{files}");
}

#[test]
fn the_default_ignore_file_under_home_applies_without_xdg_config_home() {
    let sb = Sandbox::new();
    let base = sb.repo_with_base("nb");
    sb.write_config("", &[("nb", &base.path, "")]);
    let d = sb.spawn_without(&["XDG_CONFIG_HOME"]);
    d.wait_ready(&sb);
    d.wait_serving(&sb, &["nb"]);
    // The oracle's git without XDG_CONFIG_HOME too: ~/.config/git/ignore.
    let nb = Repo {
        path: base.path.clone(),
        env: sb
            .env
            .iter()
            .filter(|(k, _)| k != "XDG_CONFIG_HOME")
            .cloned()
            .collect(),
    };
    let dir = sb.root.join("home/.config/git");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ignore"), "*.secret\n").unwrap();
    nb.write("a.secret", "s\n");
    nb.write("new/c.secret", "s\n");
    nb.write("new/e.md", "e\n");
    committed(&nb, "new/e.md", "e\n");
    git_agrees(&nb);
    let files = nb.git(&["ls-tree", "-r", "--name-only", "HEAD"]);
    assert!(!files.contains(".secret"), "{files}");
    drop(d);
}
