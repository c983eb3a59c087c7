//! The README's editor recipes (editors/gitlockd.vim, editors/gitlockd.lua),
//! run for real in headless Vim and Neovim against a running daemon. An
//! editor that is not installed is skipped with a note.
//!
//! Each runs the same sequence: commit the file with a message, show its
//! history, undo that commit (the file goes), restore it from HEAD~1 (it is
//! back), each a new commit; [`assert_sequence`] checks the history.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{on_path, Repo, Sandbox};

fn recipe(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("editors")
        .join(name)
}

/// PATH with the binary under test first, so the recipe's `gitlockd` is it.
fn path_with_gitlockd() -> String {
    let bin_dir = support::bin().parent().unwrap().to_path_buf();
    let rest = std::env::var("PATH").unwrap_or_default();
    format!("{}:{rest}", bin_dir.display())
}

/// A daemon with a long debounce, so only the editor's command can commit.
fn setup() -> (Sandbox, Repo, support::Daemon) {
    let sb = Sandbox::new();
    let nb = sb.repo_with_base("nb");
    let d = sb.serve_one("nb", &nb, "debounce = \"1h\"\nmax_delay = \"1h\"");
    nb.write("note.md", "edited in an editor\n");
    (sb, nb, d)
}

/// The history the commit → undo → restore sequence leaves, newest first.
fn assert_sequence(nb: &Repo, message: &str) {
    assert_eq!(nb.blob("note.md").as_deref(), Some("edited in an editor\n"));
    assert_eq!(
        std::fs::read_to_string(nb.path.join("note.md")).unwrap(),
        "edited in an editor\n"
    );
    let subjects = nb.git(&["log", "-3", "--format=%s"]);
    let subjects: Vec<&str> = subjects.lines().collect();
    assert_eq!(subjects.len(), 3, "{subjects:?}");
    assert!(
        subjects[0].starts_with("gitlockd: restore note.md as of "),
        "{subjects:?}"
    );
    assert_eq!(subjects[1], format!("Revert \"{message}\""));
    assert_eq!(subjects[2], message);
    assert_eq!(nb.status_porcelain(), "");
}

fn run_editor(sb: &Sandbox, mut cmd: Command) {
    for (k, v) in &sb.env {
        cmd.env(k, v);
    }
    cmd.env("PATH", path_with_gitlockd())
        .env("GITLOCKD_SOCKET", &sb.socket)
        .stdin(std::process::Stdio::null());
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "editor failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Vim and Neovim take the recipe and the sequence the same way: `load`
/// (the ex command that reads the recipe) before the file, then each step of
/// the sequence as a `-c` command.
fn run_vim_like(program: &str, flags: &[&str], load: String, message: &str) {
    if !on_path(program) {
        support::skip(&format!("{program} is not installed"));
        return;
    }
    let (sb, nb, _d) = setup();
    let mut cmd = Command::new(program);
    cmd.args(flags)
        .arg("-c")
        .arg(load)
        .arg(nb.path.join("note.md"));
    let commit = format!("GitlockdCommit {message}");
    for step in [
        commit.as_str(),
        "GitlockdLog",
        "GitlockdUndo",
        "GitlockdRestore HEAD~1",
        "qa!",
    ] {
        cmd.arg("-c").arg(step);
    }
    run_editor(&sb, cmd);
    assert_sequence(&nb, message);
}

#[test]
fn vim_recipe_commits_the_current_file_with_a_message() {
    run_vim_like(
        "vim",
        &["-Es", "-u", "NONE", "-i", "NONE", "-N"],
        format!("source {}", recipe("gitlockd.vim").display()),
        "written from vim",
    );
}

/// Without `-N`, `vim -u NONE` runs vi-compatible ('cpoptions' has `C`),
/// where line continuations are errors: the recipe must set 'cpoptions'
/// itself while it is sourced, as any plugin file has to.
#[test]
fn vim_recipe_works_in_vi_compatible_mode() {
    run_vim_like(
        "vim",
        &["-Es", "-u", "NONE", "-i", "NONE"],
        format!("source {}", recipe("gitlockd.vim").display()),
        "written from vi-compatible vim",
    );
}

#[test]
fn neovim_recipe_commits_the_current_file_with_a_message() {
    run_vim_like(
        "nvim",
        &["--headless", "-u", "NONE", "-i", "NONE"],
        format!("luafile {}", recipe("gitlockd.lua").display()),
        "written from neovim",
    );
}

#[test]
fn emacs_recipe_commits_the_current_file_with_a_message() {
    if !on_path("emacs") {
        support::skip("emacs is not installed");
        return;
    }
    let (sb, nb, _d) = setup();
    let file = nb.path.join("note.md");
    let mut cmd = Command::new("emacs");
    cmd.args(["--batch", "-Q", "-l"])
        .arg(recipe("gitlockd.el"))
        .arg(&file)
        .args([
            "--eval",
            "(gitlockd-commit \"written from emacs\")",
            "--eval",
            "(gitlockd-log)",
            "--eval",
            "(gitlockd-undo \"\")",
            "--eval",
            "(gitlockd-restore \"HEAD~1\")",
        ]);
    run_editor(&sb, cmd);
    assert_sequence(&nb, "written from emacs");
}

/// VS Code is not available here: each task of editors/vscode-tasks.json is
/// run, in the file's order, the way VS Code runs a `process` task, with its
/// variables substituted.
#[test]
fn vscode_tasks_run_as_vscode_would_run_them() {
    let (sb, nb, _d) = setup();
    let file = nb.path.join("note.md");
    let text = std::fs::read_to_string(recipe("vscode-tasks.json")).unwrap();
    let tasks: serde_json::Value = serde_json::from_str(&text).unwrap();
    for task in tasks["tasks"].as_array().unwrap() {
        assert_eq!(task["type"], "process");
        let args: Vec<String> = task["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                a.as_str()
                    .unwrap()
                    .replace("${fileDirname}", nb.path.to_str().unwrap())
                    .replace("${file}", file.to_str().unwrap())
                    .replace("${input:message}", "written from a vscode task")
                    .replace("${input:rev}", "HEAD~1")
                    .replace("${input:ago}", "0s")
            })
            .collect();
        let program = task["command"].as_str().unwrap();
        assert_eq!(program, "gitlockd");
        let mut cmd = Command::new(support::bin());
        cmd.args(&args);
        run_editor(&sb, cmd);
    }
    // The last task (restore as it was 0s ago) finds it already so.
    assert_sequence(&nb, "written from a vscode task");
}
