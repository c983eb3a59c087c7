//! `gitlockd man` and `gitlockd completions SHELL`: generated from the clap
//! definition, so they cover every subcommand; checked here for validity
//! (groff, bash -n, a real bash completion run; zsh -n and fish -n where
//! installed). Nothing generated is checked in, so nothing can go stale:
//! packaging/build-deb.sh generates them from the binary it packages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::{bin, on_path};

fn gitlockd(args: &[&str]) -> String {
    let out = Command::new(bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "gitlockd {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty(), "gitlockd {args:?} wrote to stderr");
    String::from_utf8(out.stdout).unwrap()
}

/// The visible subcommands, from the same clap definition the binary uses.
fn subcommands() -> Vec<String> {
    let names: Vec<String> = gitlockd::cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name() != "help")
        .map(|c| c.get_name().to_string())
        .collect();
    // The spec's command list (interface.md section 1) must all be there.
    for want in [
        "check-config",
        "status",
        "lock",
        "commit",
        "log",
        "show",
        "diff",
        "pause",
        "resume",
        "reload",
        "completions",
        "man",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "no `{want}` subcommand in {names:?}"
        );
    }
    names
}

/// Global long options (--config, --socket, ...).
fn global_options() -> Vec<String> {
    gitlockd::cli::command()
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .filter(|l| l != "--help" && l != "--version")
        .collect()
}

/// Runs `cmd` with `input` on stdin; returns (success, stdout, stderr).
fn pipe(cmd: &mut Command, input: &str) -> (bool, String, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn man_page_is_valid_roff_and_covers_every_subcommand() {
    let man = gitlockd(&["man"]);
    let th = man
        .lines()
        .find(|l| l.starts_with(".TH "))
        .expect("no .TH title line");
    assert!(th.starts_with(".TH gitlockd 1"), "{th}");
    let sections: Vec<&str> = man.lines().filter_map(|l| l.strip_prefix(".SH ")).collect();
    for want in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "COMMANDS",
        "\"EXIT STATUS\"",
    ] {
        assert!(
            sections.contains(&want),
            "no {want} section in {sections:?}"
        );
    }
    // One .SS per subcommand under COMMANDS, starting with its usage.
    let commands = man.split(".SH COMMANDS").nth(1).unwrap();
    for sub in subcommands() {
        assert!(
            commands
                .lines()
                .any(|l| l.starts_with(&format!(".SS \"gitlockd {sub}"))
                    || l.starts_with(&format!(".SS gitlockd {sub}"))),
            "the man page's COMMANDS lack `gitlockd {sub}`"
        );
    }
    for opt in global_options() {
        assert!(
            man.contains(&opt.replace('-', "\\-")),
            "the man page lacks {opt}"
        );
    }
    for code in ["69", "75"] {
        assert!(man.contains(code), "the man page lacks exit status {code}");
    }

    if !on_path("groff") {
        support::skip("groff is not installed: roff syntax not checked by groff");
        return;
    }
    // groff with all warnings and man-style checks: any diagnostic fails.
    let (ok, _, stderr) = pipe(
        Command::new("groff").args(["-man", "-Tutf8", "-ww", "-rCHECKSTYLE=3", "-z"]),
        &man,
    );
    assert!(ok && stderr.is_empty(), "groff diagnostics:\n{stderr}");
    // And it renders to plain text (no bold/underline overstrikes) naming
    // every subcommand.
    let (ok, text, stderr) = pipe(
        Command::new("groff").args(["-man", "-Tascii", "-P-cbu", "-rLL=100n"]),
        &man,
    );
    assert!(ok, "{stderr}");
    for sub in subcommands() {
        assert!(
            text.contains(&format!("gitlockd {sub}")),
            "rendered page lacks gitlockd {sub}"
        );
    }
}

#[test]
fn completions_mention_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let script = gitlockd(&["completions", shell]);
        assert!(script.len() > 1000, "{shell} completions are nearly empty");
        for sub in subcommands() {
            assert!(script.contains(&sub), "{shell} completions lack {sub}");
        }
        for opt in global_options() {
            assert!(
                script.contains(&opt) || script.contains(opt.trim_start_matches('-')),
                "{shell} completions lack {opt}"
            );
        }
    }
    // Unknown shells are a usage error (exit 2), not an empty script.
    let out = Command::new(bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bash_completion_is_valid_and_completes_subcommands() {
    let script = gitlockd(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gitlockd.bash");
    std::fs::write(&file, &script).unwrap();
    let out = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Load it and ask for completions as bash would on `gitlockd <TAB>` and
    // `gitlockd lock --<TAB>`.
    let probe = format!(
        r#"source {file:?}
complete -p gitlockd >/dev/null || exit 3
COMP_WORDS=(gitlockd ''); COMP_CWORD=1; _gitlockd gitlockd '' gitlockd
echo "top: ${{COMPREPLY[*]}}"
COMP_WORDS=(gitlockd lock --); COMP_CWORD=2; _gitlockd gitlockd -- lock
echo "lock: ${{COMPREPLY[*]}}"
"#
    );
    let out = Command::new("bash").arg("-c").arg(probe).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let top = stdout
        .lines()
        .find_map(|l| l.strip_prefix("top: "))
        .unwrap();
    let offered: Vec<&str> = top.split_whitespace().collect();
    for sub in subcommands() {
        assert!(
            offered.contains(&sub.as_str()),
            "`gitlockd <TAB>` does not offer {sub}: {top}"
        );
    }
    let lock = stdout
        .lines()
        .find_map(|l| l.strip_prefix("lock: "))
        .unwrap();
    for opt in ["--timeout", "--shared"] {
        assert!(
            lock.split_whitespace().any(|w| w == opt),
            "`gitlockd lock --<TAB>` lacks {opt}: {lock}"
        );
    }
}

#[test]
fn zsh_and_fish_completions_parse_where_installed() {
    for (shell, flag) in [("zsh", "-n"), ("fish", "--no-execute")] {
        if !on_path(shell) {
            support::skip(&format!(
                "{shell} is not installed: its completion syntax not checked"
            ));
            continue;
        }
        let script = gitlockd(&["completions", shell]);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(format!("gitlockd.{shell}"));
        std::fs::write(&file, script).unwrap();
        let out = Command::new(shell).arg(flag).arg(&file).output().unwrap();
        assert!(
            out.status.success(),
            "{shell} {flag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn fish_completion_offers_subcommands_where_installed() {
    if !on_path("fish") {
        support::skip("fish is not installed: its completions not exercised");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gitlockd.fish");
    std::fs::write(&file, gitlockd(&["completions", "fish"])).unwrap();
    let out = Command::new("fish")
        .arg("--no-config")
        .arg("-c")
        .arg(format!("source {file:?}; complete -C 'gitlockd '"))
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offered: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split('\t').next())
        .collect();
    for sub in subcommands() {
        assert!(
            offered.contains(&sub.as_str()),
            "fish does not offer {sub}: {offered:?}"
        );
    }
}

/// `gitlockd log <TAB>` in bash offers the configured notebook names (asked
/// of `gitlockd notebook-names` at that moment, from the config); a later
/// position or an option's value does not.
#[test]
fn bash_completion_offers_notebook_names_from_the_config() {
    let sb = support::Sandbox::new();
    let notes = sb.repo("notes");
    let work = sb.repo("work");
    sb.write_config("", &[("notes", &notes.path, ""), ("work", &work.path, "")]);
    // Where a user's config lives (the sandbox's own is elsewhere).
    let default = sb.root.join("cfg/gitlockd/config.toml");
    std::fs::create_dir_all(default.parent().unwrap()).unwrap();
    std::fs::copy(&sb.config, &default).unwrap();
    let elsewhere = sb.root.join("other.toml");
    sb.write_config("", &[("elsewhere", &work.path, "")]);
    std::fs::rename(&sb.config, &elsewhere).unwrap();
    let script = gitlockd(&["completions", "bash"]);
    let file = sb.root.join("gitlockd.bash");
    std::fs::write(&file, &script).unwrap();
    let probe = format!(
        r#"source {file:?}
ask() {{ COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); _gitlockd_with_notebooks gitlockd "${{@: -1}}" "${{@: -2:1}}"; echo "$*: ${{COMPREPLY[*]}}"; }}
ask gitlockd log ''
ask gitlockd pause --for 1h w
ask gitlockd restore no
ask gitlockd show notes ''
ask gitlockd --config {elsewhere:?} log ''
"#
    );
    let bin_dir = bin().parent().unwrap().to_path_buf();
    let cmd = sb.command(&[]);
    let out = Command::new("bash")
        .arg("-c")
        .arg(probe)
        .env_clear()
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env(
            "PATH",
            format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |prefix: &str| -> Vec<String> {
        let l = stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {stdout}"));
        l.split_whitespace().map(String::from).collect()
    };
    assert_eq!(line("gitlockd log : "), ["notes", "work"], "{stdout}");
    assert_eq!(line("gitlockd pause --for 1h w: "), ["work"], "{stdout}");
    assert_eq!(line("gitlockd restore no: "), ["notes"], "{stdout}");
    assert!(
        !line("gitlockd show notes : ").contains(&"work".to_string()),
        "{stdout}"
    );
    let with_config = format!("gitlockd --config {} log : ", elsewhere.display());
    assert_eq!(line(&with_config), ["elsewhere"], "{stdout}");
}
