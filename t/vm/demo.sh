#!/bin/sh
# SPDX-License-Identifier: ISC
# Boot a small QEMU guest with fsfreeze-agent inside and watch one
# freeze/thaw cycle from the host: the requests, the replies, the guest's
# view and the agent's syslog. About 30 s; ends with "DEMO RESULT: PASS".
#
# Usage: t/vm/demo.sh [AGENT]
#   AGENT: the built binary (default $AGENT, else src/fsfreeze-agent in the
#   current directory, i.e. run it from the build directory).
# Needs qemu-system-x86, busybox-static, e2fsprogs, kmod and python3; the
# guest kernel (Debian's linux-image-cloud-amd64) is fetched with
# apt-get download once and cached in $FSFA_VM_CACHE
# (default /var/tmp/fsfreeze-agent-vm). Nothing on this machine is frozen:
# the freeze happens inside the guest, on a disk image in a temporary
# directory.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
agent=${1:-${AGENT:-src/fsfreeze-agent}}
if [ ! -x "$agent" ]; then
	echo "no agent binary at '$agent': build first, e.g." >&2
	echo "  mkdir build && cd build && ../configure && make && ../t/vm/demo.sh" >&2
	echo "DEMO RESULT: FAIL (no agent)"
	exit 1
fi
agent=$(cd "$(dirname "$agent")" && pwd)/$(basename "$agent")
PYTHONDONTWRITEBYTECODE=1 exec python3 "$here/demo.py" "$agent"
