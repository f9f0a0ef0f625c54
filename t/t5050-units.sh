# SPDX-License-Identifier: ISC
# t5050: the systemd unit and the udev rule that start the agent.
#
# The unit is the one make built from contrib/fsfreeze-agent.service.in. It
# must keep the settings the agent's safety relies on (the state file kept
# across restarts, --thaw after every exit, the port binding), must not
# gain an option that gives the agent a mount namespace or hides the port,
# and systemd-analyze verify must have nothing to say about it. That runs
# offline, without systemd as PID 1; it is skipped when not installed.

: "${top_srcdir:=$(dirname "$0")/..}"
: "${top_builddir:=.}"
unit=$top_builddir/contrib/fsfreeze-agent.service
rule=$top_srcdir/contrib/61-fsfreeze-agent.rules
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fsfa-t5050-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

n=0
ok()
{
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
	fi
}
skip()
{
	n=$((n + 1))
	echo "ok $n # SKIP $1"
}
diag()
{
	printf '%s\n' "$@" | sed 's/^/# /'
}
# The unit's settings, comments and blank lines dropped.
settings()
{
	grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$unit"
}
has()
{
	settings | grep -q -x -F -e "$1"
}

if [ ! -f "$unit" ]; then
	echo "1..1"
	echo "not ok 1 - $unit was built"
	exit 0
fi

grep -q '@[a-z_]*@' "$unit"
ok $((!$?)) "every @variable@ is substituted"
exec_start=$(settings | sed -n 's/^ExecStart=//p')
case $exec_start in
/*/fsfreeze-agent) r=0 ;;
*) r=1 ;;
esac
ok $r "ExecStart= is the absolute path of the agent, in the foreground: '$exec_start'"
has "ExecStopPost=$exec_start --thaw"
ok $? "ExecStopPost= runs '--thaw' with the same binary"

for want in \
    'BindsTo=dev-virtio\x2dports-org.qemu.guest_agent.0.device' \
    'After=dev-virtio\x2dports-org.qemu.guest_agent.0.device' \
    'Conflicts=qemu-guest-agent.service' \
    'Restart=always' \
    'RestartSec=0' \
    'RuntimeDirectory=fsfreeze-agent' \
    'RuntimeDirectoryPreserve=yes' \
    'KillMode=mixed'; do
	has "$want"
	ok $? "unit has $want"
done
settings | grep -q '^\[Install\]'
ok $((!$?)) "no [Install] section: the device starts the unit, nothing else"

# Each of these would give the agent (and its hooks) a mount namespace,
# hide devices, or take away what hooks need; the unit says why in a
# comment.
for key in ProtectSystem ProtectHome PrivateTmp PrivateMounts \
    PrivateDevices PrivateUsers PrivateNetwork ProtectKernelTunables \
    ProtectKernelModules ProtectKernelLogs ProtectControlGroups ProtectProc \
    ProcSubset ProtectClock ProtectHostname ReadOnlyPaths ReadWritePaths \
    InaccessiblePaths TemporaryFileSystem BindPaths BindReadOnlyPaths \
    RootDirectory RootImage MountAPIVFS DeviceAllow DevicePolicy \
    NoNewPrivileges MemoryDenyWriteExecute RestrictNamespaces DynamicUser \
    User Group; do
	settings | grep -q "^$key=" && found="${found:-}$key= "
done
[ -z "${found:-}" ]
ok $? "unit sets no option that makes a mount namespace, hides devices or limits hooks${found:+: $found}"

if command -v systemd-escape >/dev/null 2>&1; then
	dev=$(systemd-escape -p --suffix=device \
	    /dev/virtio-ports/org.qemu.guest_agent.0)
	has "BindsTo=$dev"
	ok $? "BindsTo= names the unit of /dev/virtio-ports/org.qemu.guest_agent.0 ($dev)"
else
	skip "systemd-escape not installed"
fi

qga=/lib/systemd/system/qemu-guest-agent.service
if [ -f "$qga" ]; then
	want=$(sed -n 's/^BindsTo=//p' "$qga")
	has "BindsTo=$want"
	ok $? "binds to the same device as qemu-guest-agent.service ($want)"
else
	skip "qemu-guest-agent not installed"
fi

# systemd-analyze checks that the commands exist: point them at the
# built binary.
if command -v systemd-analyze >/dev/null 2>&1; then
	agent=$(cd "$top_builddir/src" && pwd)/fsfreeze-agent
	sed "s|^\(Exec[A-Za-z]*=\)$exec_start|\1$agent|" "$unit" \
	    >"$tmp/fsfreeze-agent.service"
	out=$(systemd-analyze verify --man=no "$tmp/fsfreeze-agent.service" 2>&1)
	r=$?
	[ -z "$out" ] || r=1
	ok $r "systemd-analyze verify has nothing to say"
	[ -z "$out" ] || diag "$out"
	out=$(systemd-analyze security --offline=yes --no-pager \
	    "$tmp/fsfreeze-agent.service" 2>/dev/null | tail -n 1)
	[ -z "$out" ] || diag "systemd-analyze security: $out"
else
	skip "systemd-analyze not installed"
fi

# The rule: the right device, and the unit, by assignment, after
# Debian's 60-qemu-guest-agent.rules.
grep -v -e '^#' "$rule" | tr -d '\\\n' | tr -s ' ' >"$tmp/rule"
grep -q -F 'SUBSYSTEM=="virtio-ports", ATTR{name}=="org.qemu.guest_agent.0", TAG+="systemd", ENV{SYSTEMD_WANTS}="fsfreeze-agent.service"' "$tmp/rule"
ok $? "udev rule: the guest agent port wants fsfreeze-agent.service"
last=$(printf '%s\n' 60-qemu-guest-agent.rules "${rule##*/}" |
    LC_ALL=C sort | tail -n 1)
[ "$last" = "${rule##*/}" ]
ok $? "udev rule sorts after 60-qemu-guest-agent.rules, so its = wins"
if command -v udevadm >/dev/null 2>&1 && udevadm verify --help \
    >/dev/null 2>&1; then
	out=$(udevadm verify "$rule" 2>&1)
	ok $? "udevadm verify accepts the rule"
	diag "$out"
else
	skip "udevadm verify not available (systemd < 253)"
fi

echo "1..$n"
