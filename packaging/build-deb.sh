#!/usr/bin/env bash
# Builds the Debian package of gitlockd from an already built binary.
#
#   cargo build --release --locked
#   packaging/build-deb.sh target/release/gitlockd target/debian
#
# Usage: packaging/build-deb.sh BINARY [OUTDIR]   (OUTDIR defaults to .)
# Prints the path of the .deb it wrote. Needs dpkg-deb (package dpkg); uses
# dpkg-shlibdeps (dpkg-dev) for Depends when present, and strip (binutils)
# when present. Installs nothing. Env: DEB_REVISION (default 1),
# DEB_MAINTAINER (default "gitlockd maintainers <gitlockd@localhost>"),
# DEB_COMPRESS (dpkg-deb -Z: xz by default; the tests use gzip for speed).
#
# The package holds:
#   /usr/bin/gitlockd
#   /usr/lib/systemd/user/gitlockd.service        (not enabled: see the README, "Quick start as a systemd user service")
#   /usr/share/man/man1/gitlockd.1.gz             (gitlockd man)
#   /usr/share/bash-completion/completions/gitlockd
#   /usr/share/zsh/vendor-completions/_gitlockd
#   /usr/share/fish/vendor_completions.d/gitlockd.fish
#   /usr/share/doc/gitlockd/{copyright,config.example.toml}
set -euo pipefail

die() { echo "build-deb: $*" >&2; exit 1; }

[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: $0 BINARY [OUTDIR]"
bin=$1
out=${2:-.}
[ -x "$bin" ] || die "$bin is not an executable file (build it first: cargo build --release --locked)"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (apt-get install dpkg)"

src=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

# The version comes from the binary, so the package always matches it.
version=$("$bin" --version | awk '{print $2}')
[ -n "$version" ] || die "cannot read the version from '$bin --version'"
revision=${DEB_REVISION:-1}
arch=$(dpkg --print-architecture)
maintainer=${DEB_MAINTAINER:-"gitlockd maintainers <gitlockd@localhost>"}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# dpkg-shlibdeps wants a source tree: debian/control plus the package dir.
mkdir -p "$work/debian"
printf 'Source: gitlockd\n\nPackage: gitlockd\nArchitecture: any\n' >"$work/debian/control"
root=$work/debian/gitlockd

install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib/systemd/user" \
  "$root/usr/share/man/man1" "$root/usr/share/bash-completion/completions" \
  "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d" \
  "$root/usr/share/doc/gitlockd"

install -m 0755 "$bin" "$root/usr/bin/gitlockd"
if command -v strip >/dev/null; then
  strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/gitlockd"
fi

install -m 0644 "$src/systemd/gitlockd.service" "$root/usr/lib/systemd/user/gitlockd.service"

"$bin" man >"$work/gitlockd.1"
gzip -9n <"$work/gitlockd.1" >"$root/usr/share/man/man1/gitlockd.1.gz"
chmod 0644 "$root/usr/share/man/man1/gitlockd.1.gz"

"$bin" completions bash >"$root/usr/share/bash-completion/completions/gitlockd"
"$bin" completions zsh >"$root/usr/share/zsh/vendor-completions/_gitlockd"
"$bin" completions fish >"$root/usr/share/fish/vendor_completions.d/gitlockd.fish"
for f in "$root/usr/share/bash-completion/completions/gitlockd" \
  "$root/usr/share/zsh/vendor-completions/_gitlockd" \
  "$root/usr/share/fish/vendor_completions.d/gitlockd.fish"; do
  [ -s "$f" ] || die "empty completion file $f"
  chmod 0644 "$f"
done

install -m 0644 "$src/config.example.toml" "$root/usr/share/doc/gitlockd/config.example.toml"
install -m 0644 "$src/packaging/debian/copyright" "$root/usr/share/doc/gitlockd/copyright"

# Depends: computed from the binary's shared libraries when dpkg-shlibdeps is
# there; otherwise what a Debian 12 build links against (libgit2 is vendored).
if command -v dpkg-shlibdeps >/dev/null; then
  depends=$(cd "$work" && dpkg-shlibdeps -O "debian/gitlockd/usr/bin/gitlockd" 2>/dev/null |
    sed -n 's/^shlibs:Depends=//p')
  [ -n "$depends" ] || die "dpkg-shlibdeps found no dependencies"
else
  echo "build-deb: dpkg-shlibdeps not found (apt-get install dpkg-dev); using a fixed Depends" >&2
  depends="libc6 (>= 2.34), libgcc-s1 (>= 4.2), zlib1g (>= 1:1.1.4)"
fi

installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)

cat >"$root/DEBIAN/control" <<EOF
Package: gitlockd
Version: $version-$revision
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $depends
Recommends: git
Section: utils
Priority: optional
Description: auto-commit git notebooks and share a per-notebook lock
 gitlockd is a daemon that watches "notebooks" (folders that are git
 repositories) and commits every change after a short quiet time. It owns
 one lock per notebook, shared over a Unix socket, so scripts and editors
 can make a group of changes without an auto-commit in the middle
 (gitlockd lock NOTEBOOK -- CMD).
 .
 It runs as a systemd user service: copy
 /usr/share/doc/gitlockd/config.example.toml to
 ~/.config/gitlockd/config.toml, then run
 systemctl --user enable --now gitlockd.
EOF

(cd "$root" && find usr -type f -print0 | sort -z | xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"

deb="$out/gitlockd_${version}-${revision}_${arch}.deb"
dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-xz}" --build "$root" "$deb" >/dev/null
echo "$deb"
