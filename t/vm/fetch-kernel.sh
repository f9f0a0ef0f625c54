#!/bin/sh
# SPDX-License-Identifier: ISC
# Fetch the Debian guest kernel for the t9 tests and print its directory.
#
# Usage: fetch-kernel.sh [FLAVOUR]     (default cloud-amd64)
#
# The kernel package behind linux-image-FLAVOUR is downloaded with
# "apt-get download" and unpacked with "dpkg-deb -x": it is never installed
# on this machine. depmod -b then writes modules.dep for the unpacked tree,
# which the initramfs builder reads. Everything lands in the cache directory
# $FSFA_VM_CACHE (default /var/tmp/fsfreeze-agent-vm), one folder per
# package version, so later runs only print the folder. A lock serialises
# tests that start at the same time. The folder holds:
#   vmlinuz          the bzImage
#   release          the kernel release (the name under lib/modules)
#   lib/modules/...  the modules, with modules.dep
set -eu
flavour=${1:-cloud-amd64}
cache=${FSFA_VM_CACHE:-/var/tmp/fsfreeze-agent-vm}
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock -w 600 9

# The meta package depends on exactly one versioned image package.
resolve() {
	apt-cache depends "linux-image-$flavour" 2>/dev/null |
	    awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}
pkg=$(resolve)
if [ -z "$pkg" ]; then
	# A machine whose package lists were never fetched.
	apt-get update -q >/dev/null 2>&1 || true
	pkg=$(resolve)
fi
if [ -z "$pkg" ]; then
	# No apt at all: fall back on the newest kernel already cached.
	last=$(ls -d "$cache"/linux-image-* 2>/dev/null | sort | tail -n 1)
	if [ -n "$last" ] && [ -e "$last/release" ]; then
		echo "$last"
		exit 0
	fi
	echo "fetch-kernel: cannot resolve linux-image-$flavour" >&2
	exit 1
fi
dir=$cache/$pkg
if [ -e "$dir/release" ] && [ -e "$dir/vmlinuz" ]; then
	echo "$dir"
	exit 0
fi

tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# apt drops to the _apt user for downloads; it must be able to write here.
chmod 0755 "$tmp"
(cd "$tmp" && apt-get download -q "$pkg" >download.log 2>&1) || {
	cat "$tmp/download.log" >&2
	echo "fetch-kernel: apt-get download $pkg failed" >&2
	exit 1
}
mkdir "$tmp/root"
dpkg-deb -x "$tmp"/"$pkg"_*.deb "$tmp/root"
release=$(ls "$tmp/root/lib/modules" | head -n 1)
[ -n "$release" ] || { echo "fetch-kernel: no modules in $pkg" >&2; exit 1; }
depmod -b "$tmp/root" "$release"
mkdir -p "$tmp/out/lib"
mv "$tmp/root/lib/modules" "$tmp/out/lib/modules"
mv "$tmp/root/boot/vmlinuz-$release" "$tmp/out/vmlinuz"
echo "$release" >"$tmp/out/release"
rm -rf "$dir"
mv "$tmp/out" "$dir"
echo "fetch-kernel: $pkg unpacked in $dir" >&2
echo "$dir"
