//! packaging/build-deb.sh builds a .deb from the binary under test; its file
//! list, control fields, Depends and the packaged binary are checked.
//! Skipped (with a note) where dpkg-deb is missing, i.e. off Debian.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{bin, on_path};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every file the package must hold (paths as `dpkg-deb --contents` shows them, minus "./").
const FILES: &[&str] = &[
    "usr/bin/gitlockd",
    "usr/lib/systemd/user/gitlockd.service",
    "usr/share/man/man1/gitlockd.1.gz",
    "usr/share/bash-completion/completions/gitlockd",
    "usr/share/zsh/vendor-completions/_gitlockd",
    "usr/share/fish/vendor_completions.d/gitlockd.fish",
    "usr/share/doc/gitlockd/config.example.toml",
    "usr/share/doc/gitlockd/copyright",
];

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn build_deb(out_dir: &Path) -> PathBuf {
    let out = run(Command::new(Path::new(ROOT).join("packaging/build-deb.sh"))
        .arg(bin())
        .arg(out_dir)
        .env("DEB_COMPRESS", "gzip"));
    let deb = PathBuf::from(stdout(&out).trim());
    assert!(
        deb.is_file(),
        "build-deb.sh printed {deb:?}, which is not a file"
    );
    deb
}

/// `Field: value` pairs of `dpkg-deb --field`.
fn field(deb: &Path, name: &str) -> String {
    stdout(&run(Command::new("dpkg-deb")
        .arg("--field")
        .arg(deb)
        .arg(name)))
    .trim()
    .to_string()
}

/// The Debian packages providing the binary's shared libraries (DT_NEEDED,
/// resolved by ldd, owners by dpkg -S).
fn library_packages() -> BTreeSet<String> {
    let ldd = stdout(&run(Command::new("ldd").arg(bin())));
    let mut pkgs = BTreeSet::new();
    for line in ldd.lines() {
        let Some((_, rest)) = line.split_once("=> ") else {
            continue;
        };
        let lib = rest.split_whitespace().next().unwrap();
        let real = std::fs::canonicalize(lib).unwrap();
        // dpkg -S knows a path as shipped; try it and its merged-/usr twin.
        let candidates = [
            PathBuf::from(lib),
            real.clone(),
            PathBuf::from(lib.trim_start_matches("/usr")),
            PathBuf::from(format!("/usr{lib}")),
        ];
        let owner = candidates.iter().find_map(|p| {
            let out = Command::new("dpkg").arg("-S").arg(p).output().ok()?;
            out.status.success().then(|| stdout(&out))
        });
        let owner = owner.unwrap_or_else(|| panic!("no package owns {lib}"));
        let pkg = owner.split(':').next().unwrap().trim().to_string();
        pkgs.insert(pkg);
    }
    pkgs
}

#[test]
fn deb_package_has_every_file_and_correct_control_fields() {
    if !on_path("dpkg-deb") {
        support::skip("dpkg-deb is not installed: the .deb was not built");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let deb = build_deb(dir.path());
    let version = env!("CARGO_PKG_VERSION");
    let arch = stdout(&run(Command::new("dpkg").arg("--print-architecture")))
        .trim()
        .to_string();
    assert_eq!(
        deb.file_name().unwrap().to_str().unwrap(),
        format!("gitlockd_{version}-1_{arch}.deb")
    );

    // Contents: every promised file, owned by root, with sane modes.
    let contents = stdout(&run(Command::new("dpkg-deb").arg("--contents").arg(&deb)));
    for file in FILES {
        let line = contents
            .lines()
            .find(|l| l.ends_with(&format!("./{file}")))
            .unwrap_or_else(|| panic!("{file} missing from the package:\n{contents}"));
        assert!(
            line.contains("root/root"),
            "{file} not owned by root: {line}"
        );
        let want = if *file == "usr/bin/gitlockd" {
            "-rwxr-xr-x"
        } else {
            "-rw-r--r--"
        };
        assert!(line.starts_with(want), "{file} should be {want}: {line}");
    }
    let files = contents.lines().filter(|l| l.starts_with('-')).count();
    assert_eq!(files, FILES.len(), "unexpected extra files:\n{contents}");

    // Control fields.
    assert_eq!(field(&deb, "Package"), "gitlockd");
    assert_eq!(field(&deb, "Version"), format!("{version}-1"));
    assert_eq!(field(&deb, "Architecture"), arch);
    assert_eq!(field(&deb, "Section"), "utils");
    assert_eq!(field(&deb, "Priority"), "optional");
    assert!(!field(&deb, "Maintainer").is_empty());
    assert!(field(&deb, "Installed-Size").parse::<u64>().unwrap() > 0);
    assert!(field(&deb, "Description").starts_with("auto-commit git notebooks"));
    // Depends names the package of every shared library the binary loads.
    let depends = field(&deb, "Depends");
    let depends: BTreeSet<String> = depends
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap().to_string())
        .collect();
    let needed = library_packages();
    assert!(
        needed.is_subset(&depends),
        "Depends {depends:?} lacks some of {needed:?} (from ldd)"
    );
    for pkg in ["libc6", "zlib1g"] {
        assert!(depends.contains(pkg), "Depends lacks {pkg}: {depends:?}");
    }

    // Unpack and use what was packaged.
    let root = dir.path().join("root");
    run(Command::new("dpkg-deb")
        .arg("--extract")
        .arg(&deb)
        .arg(&root));
    let packaged = root.join("usr/bin/gitlockd");
    let v = stdout(&run(Command::new(&packaged).arg("--version")));
    assert_eq!(v.trim(), format!("gitlockd {version}"));
    assert_eq!(
        std::fs::read(root.join("usr/lib/systemd/user/gitlockd.service")).unwrap(),
        std::fs::read(Path::new(ROOT).join("systemd/gitlockd.service")).unwrap()
    );
    assert_eq!(
        std::fs::read(root.join("usr/share/doc/gitlockd/config.example.toml")).unwrap(),
        std::fs::read(Path::new(ROOT).join("config.example.toml")).unwrap()
    );
    let man = run(Command::new("gzip")
        .arg("-dc")
        .arg(root.join("usr/share/man/man1/gitlockd.1.gz")));
    assert_eq!(stdout(&man), stdout(&run(Command::new(bin()).arg("man"))));
    for (shell, path) in [
        ("bash", "usr/share/bash-completion/completions/gitlockd"),
        ("zsh", "usr/share/zsh/vendor-completions/_gitlockd"),
        ("fish", "usr/share/fish/vendor_completions.d/gitlockd.fish"),
    ] {
        assert_eq!(
            std::fs::read_to_string(root.join(path)).unwrap(),
            stdout(&run(Command::new(bin()).args(["completions", shell]))),
            "{path}"
        );
    }
    // md5sums cover every file, and match.
    let sums = run(Command::new("md5sum")
        .arg("--check")
        .arg("--strict")
        .current_dir(&root)
        .stdin(std::fs::File::open(control_file(&deb, dir.path(), "md5sums")).unwrap())
        .arg("-"));
    assert_eq!(
        stdout(&sums).lines().count(),
        FILES.len(),
        "{}",
        stdout(&sums)
    );
}

/// Extracts DEBIAN/`name` from the package.
fn control_file(deb: &Path, scratch: &Path, name: &str) -> PathBuf {
    let ctrl = scratch.join("control");
    run(Command::new("dpkg-deb")
        .arg("--control")
        .arg(deb)
        .arg(&ctrl));
    ctrl.join(name)
}

#[test]
fn build_deb_refuses_a_missing_binary() {
    if !on_path("dpkg-deb") {
        support::skip("dpkg-deb is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(Path::new(ROOT).join("packaging/build-deb.sh"))
        .arg(dir.path().join("no-such-binary"))
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an executable"));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}
