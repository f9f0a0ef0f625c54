#!/bin/sh
# SPDX-License-Identifier: ISC
# The whole test suite, as CI runs it: a -Werror build and `make check`,
# the same under ASan and UBSan, `make distcheck`, and the fuzzer for a
# minute when clang can build it. Ends with "N passed, N failed".
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
out=${SUITE_DIR:-$top/build-suite}
jobs=${JOBS:-2}
rc=0
mkdir -p "$out"
cd "$top" && autoreconf -fi >"$out/autoreconf.log" 2>&1 || {
	cat "$out/autoreconf.log"; echo "0 passed, 1 failed"; exit 1; }

step() {
	echo "=== $1"
}

# 1. gcc with -Werror, the whole suite (root: loop devices, guests).
step "build and check (gcc, -Werror)"
mkdir -p "$out/gcc" && cd "$out/gcc" &&
	"$top/configure" -q --enable-werror CFLAGS="-O2 -g -Wall -Wextra -Werror" &&
	make -s -j"$jobs" && make -s -j1 check || { echo "FAILED: gcc pass"; rc=1; }

# 2. ASan + UBSan.
step "check under ASan and UBSan"
mkdir -p "$out/asan" && cd "$out/asan" &&
	"$top/configure" -q --enable-werror --enable-sanitizers CC=gcc &&
	make -s -j"$jobs" &&
	FSFA_SKIP_GUEST="ASan build: the guest tests run in the gcc pass" \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	make -s -j1 check || { echo "FAILED: ASan pass"; rc=1; }

# 3. distcheck (read-only srcdir, VPATH, install/uninstall).
step "distcheck"
cd "$out/gcc" && FSFA_SKIP_GUEST="distcheck: the guest tests run in the gcc pass" \
	make -s distcheck >"$out/distcheck.log" 2>&1 || {
	tail -40 "$out/distcheck.log"; rc=1; }

# 4. What make install lays out, under DESTDIR.
step "make install DESTDIR"
dest="$out/destdir"
rm -rf "$dest"
cd "$out/gcc" && make -s install DESTDIR="$dest" >"$out/install.log" 2>&1 || {
	cat "$out/install.log"; rc=1; }
prefix=/usr/local
for f in sbin/fsfreeze-agent etc/fsfreeze-agent.conf \
    share/man/man8/fsfreeze-agent.8 share/man/man5/fsfreeze-agent.conf.5 \
    lib/systemd/system/fsfreeze-agent.service \
    lib/udev/rules.d/61-fsfreeze-agent.rules \
    etc/fsfreeze-agent/hooks.d/mariadb.sample \
    etc/fsfreeze-agent/hooks.d/postgresql.sample \
    etc/fsfreeze-agent/hooks.d/template.sample; do
	[ -e "$dest$prefix/$f" ] || { echo "install: missing $prefix/$f"; rc=1; }
done

# 5. Man pages render cleanly; the C sources are formatted.
step "man pages and formatting"
mandoc -T lint -W warning "$top/doc/fsfreeze-agent.8" \
    "$top/doc/fsfreeze-agent.conf.5" || { echo "FAILED: mandoc -T lint"; rc=1; }
for m in "$top/doc/fsfreeze-agent.8" "$top/doc/fsfreeze-agent.conf.5"; do
	w=$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l "$m" 2>&1 >/dev/null)
	[ -z "$w" ] || { echo "$m: $w"; rc=1; }
done
if command -v clang-format >/dev/null 2>&1; then
	(cd "$top" && clang-format --dry-run --Werror src/*.c src/*.h t/*.c \
	    t/fuzz/*.c) || { echo "FAILED: clang-format (run make reformat)"; rc=1; }
fi

# 6. The Debian package builds, passes lintian, installs and purges.
if command -v dpkg-buildpackage >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
	step "Debian package"
	tarball=$(ls "$out"/gcc/fsfreeze-agent-*.tar.gz 2>/dev/null | head -1)
	DEB_BUILD_OPTIONS=nocheck sh "$top/contrib/debian-build.sh" -i \
	    ${tarball:+"$tarball"} >"$out/deb.log" 2>&1 || {
		tail -40 "$out/deb.log"; rc=1; }
	grep -E "^(E|W): " "$out/deb.log" || true
fi

# 7. The fuzzer, about a minute, ASan + UBSan (clang).
if command -v clang >/dev/null 2>&1; then
	step "fuzz 60 s"
	mkdir -p "$out/fuzz" && cd "$out/fuzz" &&
		"$top/configure" -q --enable-fuzzing CC=clang &&
		make -s fuzz >"$out/fuzz-build.log" 2>&1 &&
		./t/fuzz/proto-fuzz -max_total_time=60 -rss_limit_mb=512 \
		    "$top/t/fuzz/corpus" >"$out/fuzz.log" 2>&1 || {
		tail -40 "$out/fuzz-build.log" "$out/fuzz.log" 2>/dev/null
		echo "fuzz: FAILED"; rc=1; }
	[ -f "$out/fuzz.log" ] && tail -3 "$out/fuzz.log"
fi

# The summary CI reads: every test result of every pass, failures first.
cd "$out"
count() {
	find . -name '*.trs' -not -path '*/_build/*' -exec cat {} + 2>/dev/null |
		grep -Ec "^:test-result: ($1)"
}
for f in $(grep -rlE '^:test-result: (FAIL|XPASS|ERROR)' --include='*.trs' . 2>/dev/null); do
	echo "--- ${f%.trs}.log"
	tail -30 "${f%.trs}.log"
done
p=$(count 'PASS|XFAIL'); f=$(count 'FAIL|XPASS|ERROR'); s=$(count SKIP)
[ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
echo "$s skipped"
echo "$p passed, $f failed"
exit "$rc"
