#!/bin/sh
# SPDX-License-Identifier: ISC
#
# Build the RPM from contrib/fsfreeze-agent.spec in a scratch directory:
# make a dist tarball (or take the one given) and run rpmbuild -bb on the
# spec inside it. Prints where the package is and what it holds.
#
# usage: contrib/rpm-build.sh [TARBALL]
#
# On an RPM distribution this is a real build. Elsewhere (Debian's rpm
# package) BuildRequires cannot be checked and systemd-rpm-macros is
# missing: the build then runs with --nodeps and with the systemd scriptlet
# macros defined empty, which checks the spec, the build and the file list,
# but gives a package not meant to be installed. RPMBUILD_OPTS is passed on
# (e.g. --nocheck).

set -eu

[ $# -le 1 ] || { echo "usage: $0 [TARBALL]" >&2; exit 2; }
command -v rpmbuild >/dev/null || { echo "rpmbuild not found" >&2; exit 1; }

srcdir=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/fsfa-rpm-XXXXXX")
echo "scratch directory: $work"
mkdir "$work/SOURCES" "$work/SPECS"

if [ $# -eq 1 ]; then
	tarball=$(cd "$(dirname "$1")" && pwd)/${1##*/}
else
	mkdir "$work/dist"
	(cd "$work/dist" && "$srcdir/configure" -q && make -s dist) >&2
	tarball=$(ls "$work"/dist/fsfreeze-agent-*.tar.gz)
fi
base=${tarball##*/}
base=${base%.tar.gz}
version=${base#fsfreeze-agent-}
cp "$tarball" "$work/SOURCES/"
tar -C "$work/SPECS" -xzf "$tarball" --strip-components=2 \
    "$base/contrib/fsfreeze-agent.spec"
spec=$work/SPECS/fsfreeze-agent.spec
specversion=$(sed -n 's/^Version:[[:space:]]*//p' "$spec")
if [ "$specversion" != "$version" ]; then
	echo "the spec is at $specversion, the tarball at $version" >&2
	exit 1
fi

set -- --define "_topdir $work"
if ! rpm -q rpm >/dev/null 2>&1 || [ -z "$(rpm --eval '%{?systemd_post:y}')" ]; then
	echo "not an RPM distribution: --nodeps, systemd scriptlets left empty"
	set -- "$@" --nodeps \
	    --define 'systemd_post() %{nil}' \
	    --define 'systemd_preun() %{nil}' \
	    --define 'systemd_postun_with_restart() %{nil}' \
	    --define 'systemd_requires %{nil}'
fi
# shellcheck disable=SC2086 # RPMBUILD_OPTS is a list of words
rpmbuild -bb "$@" ${RPMBUILD_OPTS:-} "$spec" >"$work/build.log" 2>&1 || {
	tail -n 40 "$work/build.log" >&2
	echo "rpmbuild failed: $work/build.log" >&2
	exit 1
}
for rpmfile in "$work"/RPMS/*/fsfreeze-agent-"$version"-*.rpm; do
	case $rpmfile in
	*debuginfo* | *debugsource*) continue ;;
	esac
	echo "package:   $rpmfile"
	rpm -qlp --nosignature "$rpmfile" 2>/dev/null | sed 's/^/  /'
done
echo "build log: $work/build.log"
