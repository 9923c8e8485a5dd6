#!/bin/bash
# Builds spartan_VERSION_amd64.deb from a staged tree with dpkg-deb (see
# rel/README.md for why not nfpm). Usage: rel/deb/build.sh OUTDIR VERSION
# The units are every *.service, *.socket and *.timer of rel/; those with
# an [Install] section are enabled on install, as dh_installsystemd does.
set -euo pipefail

out=${1:?usage: build.sh OUTDIR VERSION}
version=${2:?usage: build.sh OUTDIR VERSION}
# A Debian version starts with a digit: a release tag stays as it is, a bare
# commit (git describe --always) becomes 0~gitHASH, which sorts before any
# release; "-" (git describe's separator: 1.2.0-3-gHASH) becomes "+", which
# sorts after the tag.
# (A bare hash may start with a digit too: a release is N.N...)
if ! [[ $version =~ ^[0-9]+(\.[0-9]+)+ ]] && ! [[ $version =~ ^0~ ]]; then
	version=0~git$version
fi
version=${version//-/+}
root=$(cd "$(dirname "$0")/../.." && pwd)
go=${GO:-go}
mkdir -p "$out"
out=$(cd "$out" && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg=$stage/spartan
umask 022

install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/lib/systemd/system" "$pkg/etc/spartan" \
	"$pkg/usr/share/man/man8" "$pkg/usr/share/doc/spartan"

# Static, stripped, position-independent binaries: no shared-library
# dependency to declare, and what lintian's hardening checks ask for.
for b in spartan spartanctl; do
	(cd "$root" && CGO_ENABLED=0 "$go" build -trimpath -buildmode=pie \
		-ldflags "-s -w -X main.Version=$version" -o "$pkg/usr/bin/$b" "./cmd/$b")
done

# Man pages from the markdown the binaries print as -h / help.
for b in spartan spartanctl; do
	(cd "$root" && "$go" tool go-md2man -in "cmd/$b/$b.8.md" -out "$stage/$b.8")
	gzip -9n -c "$stage/$b.8" > "$pkg/usr/share/man/man8/$b.8.gz"
done

units=()
for u in "$root"/rel/*.service "$root"/rel/*.socket "$root"/rel/*.timer; do
	[ -e "$u" ] || continue
	install -m 0644 "$u" "$pkg/lib/systemd/system/"
	units+=("$(basename "$u")")
done
# Enabled on install: the units with an [Install] section; started: those
# and nothing else (the oneshot services run from their timers).
enable=()
for u in "${units[@]}"; do
	grep -q '^\[Install\]' "$root/rel/$u" && enable+=("$u")
done

install -m 0644 "$root/rel/spartan.json" "$pkg/etc/spartan/spartan.json"
install -m 0644 "$root/rel/deb/copyright" "$pkg/usr/share/doc/spartan/copyright"
install -m 0644 "$root/README.md" "$pkg/usr/share/doc/spartan/README.md"
install -m 0644 "$root/docs/OPERATOR.md" "$pkg/usr/share/doc/spartan/OPERATOR.md"
date=$(date -R -d "@${SOURCE_DATE_EPOCH:-$(cd "$root" && git log -1 --format=%ct 2>/dev/null || date +%s)}")
printf 'spartan (%s) unstable; urgency=medium\n\n  * Built from the Spartan repository; see README.md.\n\n -- %s  %s\n' \
	"$version" "$(sed -n 's/^Maintainer: //p' "$root/rel/deb/control")" "$date" |
	gzip -9n > "$pkg/usr/share/doc/spartan/changelog.gz"

size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@SIZE@/$size/" "$root/rel/deb/control" > "$pkg/DEBIAN/control"
echo /etc/spartan/spartan.json > "$pkg/DEBIAN/conffiles"
for s in postinst prerm postrm; do
	sed -e "s/@UNITS@/${units[*]}/" -e "s/@ENABLE@/${enable[*]}/" "$root/rel/deb/$s" > "$pkg/DEBIAN/$s"
	chmod 0755 "$pkg/DEBIAN/$s"
done
(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
	xargs -0 md5sum > DEBIAN/md5sums)
chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/conffiles" "$pkg/DEBIAN/md5sums"

deb=$out/spartan_${version}_amd64.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "$deb"
