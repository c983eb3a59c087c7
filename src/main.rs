//! `gitlockd`: the daemon (no subcommand) and its command-line client.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use gitlockd::cli::{Cli, Command};
use gitlockd::{cli, client, config, daemon, logging};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config_path = cli
        .config
        .clone()
        .unwrap_or_else(config::default_config_path);
    let code = match &cli.command {
        None => {
            logging::init(cli.log_filter().as_deref());
            daemon::run(daemon::DaemonOptions {
                config_path,
                socket_override: cli.socket.clone(),
            })
        }
        Some(Command::CheckConfig) => check_config(&config_path),
        Some(Command::NotebookNames) => {
            // For shell completion: quiet, and nothing when the config is invalid.
            if let Ok(cfg) = config::load(&config_path) {
                let mut out = std::io::stdout().lock();
                for nb in &cfg.notebooks {
                    let _ = writeln!(out, "{}", nb.name);
                }
            }
            0
        }
        Some(Command::Completions { shell }) => {
            cli::write_completions(*shell, &mut std::io::stdout());
            0
        }
        Some(Command::Man) => match cli::write_man(&mut std::io::stdout()) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("gitlockd: cannot write the man page: {e}");
                1
            }
        },
        Some(_) => {
            let socket = client_socket(&cli, &config_path);
            client::run(&cli, &socket)
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn check_config(path: &std::path::Path) -> i32 {
    match config::load(path) {
        Ok(cfg) => {
            let mut out = std::io::stdout();
            let _ = writeln!(out, "config {} is valid", path.display());
            let _ = write!(out, "{}", cfg.describe());
            let code = check_git_paths(&cfg, &mut out);
            let _ = out.flush();
            code
        }
        Err(errors) => {
            eprintln!("gitlockd: invalid config {}:\n{errors}", path.display());
            2
        }
    }
}

/// For each existing notebook repository: whether its commits go through
/// `git` (and why), and whether that `git` can be run. 2 when one cannot.
fn check_git_paths(cfg: &config::Config, out: &mut impl Write) -> i32 {
    let mut code = 0;
    for nb in &cfg.notebooks {
        let Ok(git) = gitlockd::git::GitManager::new(&nb.path) else {
            continue;
        };
        let Ok(features) = git.git_features(nb.hooks) else {
            continue;
        };
        if features.is_empty() {
            continue;
        }
        let why: Vec<String> = features.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "notebook {:?} commits through git: {}",
            nb.name,
            why.join(", ")
        );
        if let Err(e) = git.check_git_usable(nb.hooks) {
            eprintln!("gitlockd: notebook {:?}: {e}", nb.name);
            code = 2;
        }
    }
    code
}

/// `--socket` / `GITLOCKD_SOCKET`, else the config's `socket` when the config
/// file reads cleanly, else the default path.
fn client_socket(cli: &Cli, config_path: &std::path::Path) -> PathBuf {
    if let Some(socket) = &cli.socket {
        return socket.clone();
    }
    if config_path.exists() {
        if let Ok(cfg) = config::load(config_path) {
            return cfg.socket;
        }
    }
    config::default_socket_path()
}
