#!/bin/sh
# SPDX-License-Identifier: ISC
#
# Build the Debian package in a scratch directory, never in the source tree:
# make a dist tarball (or take the one given), unpack it, copy its
# contrib/debian to debian/, run dpkg-buildpackage -us -uc -b, then lintian
# on the .deb (errors fail the build). Prints where everything is.
#
# usage: contrib/debian-build.sh [-o OUTDIR] [-i] [TARBALL]
#   -o OUTDIR  also copy the .deb, .buildinfo and .changes there
#   -i         then install the .deb with dpkg -i and purge it again, and
#              check that nothing of it is left (root only; changes this
#              machine's package database for a moment)
#   TARBALL    a fsfreeze-agent-VERSION.tar.gz from make dist; default: one
#              made from this tree in the scratch directory
#
# DEB_BUILD_OPTIONS is passed on (nocheck skips make check).
# Build dependencies: dpkg-dev debhelper lintian, and those in
# contrib/debian/control.

set -eu

usage()
{
	echo "usage: $0 [-o OUTDIR] [-i] [TARBALL]" >&2
	exit 2
}

outdir=
install_test=no
while getopts o:i opt; do
	case $opt in
	o) outdir=$(cd "$OPTARG" && pwd) ;;
	i) install_test=yes ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -le 1 ] || usage

srcdir=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/fsfa-deb-XXXXXX")
echo "scratch directory: $work"

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

# The orig tarball is what the package is built from: debian/ comes from
# the tarball's own contrib/debian, so the package cannot use a file that
# make dist leaves out.
cp "$tarball" "$work/fsfreeze-agent_$version.orig.tar.gz"
tar -C "$work" -xzf "$tarball"
tree=$work/$base
[ -d "$tree/contrib/debian" ] ||
	{ echo "$base: no contrib/debian in the tarball" >&2; exit 1; }
cp -R "$tree/contrib/debian" "$tree/debian"

debversion=$(dpkg-parsechangelog -l "$tree/debian/changelog" -S Version)
if [ "${debversion%-*}" != "$version" ]; then
	echo "debian/changelog is at $debversion, the tarball at $version:" \
	    "add a changelog entry (dch -v $version-1)" >&2
	exit 1
fi

(cd "$tree" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1 || {
	tail -n 40 "$work/build.log" >&2
	echo "dpkg-buildpackage failed: $work/build.log" >&2
	exit 1
}
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
deb=$work/fsfreeze-agent_${debversion}_$arch.deb
changes=$work/fsfreeze-agent_${debversion}_$arch.changes
[ -f "$deb" ] || { echo "no $deb" >&2; exit 1; }

echo "lintian:"
lintian --fail-on error -I "$deb" | sed 's/^/  /' || {
	echo "lintian reports errors" >&2
	exit 1
}

if [ -n "$outdir" ]; then
	cp "$deb" "$changes" "$work"/fsfreeze-agent_"${debversion}"_*.buildinfo \
	    "$outdir"
	deb=$outdir/${deb##*/}
	changes=$outdir/${changes##*/}
fi
echo "package:   $deb"
echo "changes:   $changes"
echo "build log: $work/build.log"

[ "$install_test" = yes ] || exit 0

# --- install and purge ----------------------------------------------------
# The postinst starts nothing here: the unit is static (no [Install]), so
# deb-systemd-invoke skips it; without systemd as PID 1 (no
# /run/systemd/system) the snippets do not call systemctl at all; and a
# policy-rc.d that answers 101 stops it too. It starts only when udev sees
# the virtio port, which dpkg does not trigger.
[ "$(id -u)" -eq 0 ] || { echo "-i needs root" >&2; exit 1; }
if dpkg-query -W -f '${Status}' fsfreeze-agent 2>/dev/null |
    grep -q 'installed'; then
	echo "fsfreeze-agent is installed already: not touching it" >&2
	exit 1
fi
ours()
{
	find /etc /lib /usr/sbin /usr/share/doc /usr/share/man \
	    /var/lib/systemd /run -xdev -name '*fsfreeze-agent*' 2>/dev/null |
	    sort
}
running()
{
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/exe" 2>/dev/null)" = /usr/sbin/fsfreeze-agent ] &&
		    echo "${p#/proc/}"
	done
	return 0
}
ours >"$work/before"
fail=0
dpkg -i "$deb" >"$work/install.log" 2>&1 || {
	cat "$work/install.log" >&2
	echo "dpkg -i failed" >&2
	exit 1
}
for f in /usr/sbin/fsfreeze-agent /etc/fsfreeze-agent.conf \
    /lib/systemd/system/fsfreeze-agent.service \
    /lib/udev/rules.d/61-fsfreeze-agent.rules \
    /etc/fsfreeze-agent/hooks.d/mariadb.sample \
    /usr/share/doc/fsfreeze-agent/hooks.d/README; do
	[ -e "$f" ] || { echo "installed: $f missing" >&2; fail=1; }
done
dpkg-query -W -f '${Conffiles}\n' fsfreeze-agent | grep -q ' /etc/fsfreeze-agent.conf ' ||
	{ echo "/etc/fsfreeze-agent.conf is not a conffile" >&2; fail=1; }
pids=$(running)
[ -z "$pids" ] || { echo "installing started the daemon: $pids" >&2; fail=1; }
/usr/sbin/fsfreeze-agent -V >/dev/null 2>&1 ||
	{ echo "/usr/sbin/fsfreeze-agent -V failed" >&2; fail=1; }
/usr/sbin/fsfreeze-agent --check >"$work/check.log" 2>&1 ||
	{ cat "$work/check.log" >&2; echo "--check with the installed configuration failed" >&2; fail=1; }
# The installed daemon starts with the installed configuration, as the
# unit starts it, but on a private socket (there is no virtio port here),
# answers a host's sync, and exits 0 on SIGTERM.
/usr/sbin/fsfreeze-agent -m unix-listen -p "$work/agent.sock" \
    </dev/null >"$work/agent.log" 2>&1 &
apid=$!
python3 - "$work/agent.sock" <<'PYEOF' || { cat "$work/agent.log" >&2; echo "the installed daemon did not answer" >&2; fail=1; }
import os, socket, sys, time
deadline = time.monotonic() + 10
while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
    time.sleep(0.05)
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(b'{"execute":"guest-sync-delimited","arguments":{"id":42}}\n')
got = b""
while not got.endswith(b"\n"):
    got += s.recv(100)
sys.exit(0 if got == b'\xff{"return": 42}\n' else 1)
PYEOF
kill -TERM "$apid" 2>/dev/null || true
st=0
wait "$apid" || st=$?
[ "$st" -eq 0 ] || { echo "the installed daemon exited $st on SIGTERM" >&2; fail=1; }
dpkg --purge fsfreeze-agent >"$work/purge.log" 2>&1 || {
	cat "$work/purge.log" >&2
	echo "dpkg --purge failed" >&2
	exit 1
}
ours >"$work/after"
if ! cmp -s "$work/before" "$work/after"; then
	echo "left behind after purge:" >&2
	comm -13 "$work/before" "$work/after" >&2
	fail=1
fi
[ "$fail" -eq 0 ] || exit 1
echo "install, start, stop and purge: ok; installing started nothing, purging left nothing"
