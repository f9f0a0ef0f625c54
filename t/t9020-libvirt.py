# SPDX-License-Identifier: ISC
"""t9020: the t9010 guest as a libvirt domain, driven with virsh.

libvirt is the strictest host: it reads the agent's replies line by line
and marks the agent broken for good on one line it cannot parse. The same
initramfs as t9010 (the agent built from this tree, started by init as the
shipped service starts it) boots as a libvirt domain whose agent port is a
<channel type='unix'> with target org.qemu.guest_agent.0; the checks use
virsh domfsfreeze / domfsthaw / qemu-agent-command and a quiesced disk-only
snapshot of a qcow2 disk. The guest's root shell (a second channel) shows
the hooks' record from inside.

libvirtd and virtlogd are started here when no libvirtd answers (no systemd
on this machine), with their logs in this test's directory, and stopped
again by their pids. Needs root, libvirt-daemon-system, libvirt-clients,
qemu-system-x86, qemu-utils. Environment as for t9010 (FSFA_VM_CACHE,
FSFA_VM_ACCEL, FSFA_VM_AGENT=qemu-ga, FSFA_VM_KEEP, FSFA_SKIP_GUEST).
"""

import json
import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "vm"))
from agenttest import TAP  # noqa: E402
import vmrun  # noqa: E402
from qgaclient import GuestShell  # noqa: E402

# The agent's own status command (src/agent.h REPORT_COMMAND).
REPORT = "__io.github.fsfreeze-agent_report"
URI = "qemu:///system"
AGENT_CMD = "/usr/sbin/fsfreeze-agent -c /etc/fsfreeze-agent.conf"
CONF = """\
[agent]
state_dir = /run/fsfreeze-agent

[hooks]
dir = /etc/fsfreeze-agent/hooks.d
timeout = 10s

[freeze]
max_frozen = 60s
"""
FREEZE_HOOKS = ["10-a freeze", "20-b freeze", "30-ctl freeze"]
THAW_HOOKS = ["30-ctl thaw", "20-b thaw", "10-a thaw"]
# What libvirt logs when it gives up on an agent (qemu_agent.c).
AGENT_ERRORS = r"(?i)malformed|broken|unable to parse|not available due " \
    r"to an error|unexpected .*agent"

t = TAP()
# Cleanups (QEMU, the domain, the daemons, /dev/kvm) run on any exit: an
# exception or a SIGTERM from the harness as well as done() and bail().
atexit.register(t.run_cleanups)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
if os.environ.get("FSFA_SKIP_GUEST"):
    TAP.skip_all(os.environ["FSFA_SKIP_GUEST"])
miss = vmrun.missing_tools()
for prog, pkg in (("virsh", "libvirt-clients"),
                  ("libvirtd", "libvirt-daemon-system"),
                  ("virtlogd", "libvirt-daemon-system"),
                  ("qemu-img", "qemu-utils"), ("dumpe2fs", "e2fsprogs")):
    if not shutil.which(prog) and \
            not os.path.exists(os.path.join("/usr/sbin", prog)):
        miss.append("%s (%s)" % (prog, pkg))
if miss:
    TAP.skip_all("needs " + ", ".join(miss))
if os.geteuid() != 0:
    TAP.skip_all("needs root (libvirt's qemu:///system)")
if os.environ.get("FSFA_VM_AGENT") == "qemu-ga":
    # The rig's own check, as in t9010: what qemu-ga lacks then fails.
    AGENT = "/usr/sbin/qemu-ga"
    AGENT_CMD = ("/usr/sbin/qemu-ga -m virtio-serial -p "
                 "/dev/virtio-ports/org.qemu.guest_agent.0 "
                 "-F/etc/qemu/fsfreeze-hook -t /run")
else:
    AGENT = os.environ.get("AGENT") or ""
if not os.access(AGENT, os.X_OK):
    TAP.skip_all("no agent binary (AGENT=%r)" % AGENT)

T0 = time.monotonic()
# One t9020 at a time on a machine: two would share (and stop) one libvirtd,
# mix their domains in its log and both change /dev/kvm.
waited = vmrun.lock("t9020")
if waited is None:
    t.bail("another t9020 held the lock for 10 minutes")
if waited > 1:
    t.diag("waited %.0f s for another t9020 to finish" % waited)
work = tempfile.mkdtemp(prefix="fsfa-t9020-")
if os.environ.get("FSFA_VM_KEEP") != "1":
    t.cleanup(lambda: shutil.rmtree(work, ignore_errors=True))
os.chmod(work, 0o755)
DOM = "fsfa-t9020-%d" % os.getpid()


def virsh(*args, timeout=120):
    """(exit status, stdout + stderr) of virsh -c qemu:///system ARGS."""
    try:
        p = subprocess.run(["virsh", "-c", URI] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, "virsh %s: timed out after %d s" % (args[0], timeout)
    return p.returncode, p.stdout.strip()


def agent_cmd(cmd, args=None, timeout=60):
    """qemu-agent-command; the parsed reply or {"virsh": error text}."""
    req = {"execute": cmd}
    if args is not None:
        req["arguments"] = args
    rc, out = virsh("qemu-agent-command", DOM, json.dumps(req),
                    "--timeout", str(timeout), timeout=timeout + 30)
    if rc != 0:
        return {"virsh": out}
    try:
        return json.loads(out)
    except ValueError:
        return {"virsh": out}


def pid_alive(pidfile):
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


# --- the daemons ---------------------------------------------------------

started = []   # pid files of what we started
kvm_mode = None


def stop_daemons():
    for pf in reversed(started):
        pid = pid_alive(pf)
        if pid:
            os.kill(pid, 15)
            for _ in range(50):
                if not pid_alive(pf):
                    break
                time.sleep(0.1)


def restore_kvm():
    if kvm_mode is not None:
        os.chown("/dev/kvm", -1, kvm_mode[1])
        os.chmod("/dev/kvm", kvm_mode[0])


t.cleanup(stop_daemons)
t.cleanup(restore_kvm)

# libvirt re-probes QEMU on every call when the user it runs QEMU as
# (libvirt-qemu, group kvm) cannot open a /dev/kvm it once saw: with this
# machine's root-only /dev/kvm that makes each virsh call take a minute.
# Debian's own udev rule gives the device to group kvm, 0660; do the same
# for the run and put back what was there.
if os.path.exists("/dev/kvm"):
    st = os.stat("/dev/kvm")
    try:
        import grp
        kvm_gid = grp.getgrnam("kvm").gr_gid
    except KeyError:
        kvm_gid = None
    if kvm_gid is not None and (st.st_gid != kvm_gid or
                                st.st_mode & 0o060 != 0o060):
        kvm_mode = (st.st_mode & 0o7777, st.st_gid)
        os.chown("/dev/kvm", -1, kvm_gid)
        os.chmod("/dev/kvm", 0o660)

liblog = os.path.join(work, "libvirtd.log")
ours = False
if virsh("version", timeout=60)[0] != 0:
    env = dict(os.environ)
    # Every line the agent sends is logged ("Line [...]", debug level of
    # qemu.qemu_agent); everything else at warning and above.
    env["LIBVIRT_LOG_FILTERS"] = "1:qemu.qemu_agent"
    env["LIBVIRT_LOG_OUTPUTS"] = "1:file:" + liblog
    for d in ("virtlogd", "libvirtd"):
        if d == "virtlogd" and subprocess.run(
                ["pidof", "virtlogd"], stdout=subprocess.DEVNULL).returncode \
                == 0:
            continue
        pf = os.path.join(work, d + ".pid")
        r = subprocess.run(["/usr/sbin/" + d, "-d", "--pid-file", pf],
                           env=env)
        if r.returncode == 0:
            started.append(pf)
    ours = True
    deadline = time.monotonic() + 60
    while virsh("version", timeout=30)[0] != 0:
        if time.monotonic() > deadline:
            t.bail("libvirtd did not answer: " + virsh("version")[1])
        time.sleep(0.2)
rc, out = virsh("version")
hv = re.search(r"Running hypervisor: (.*)", out)
t.ok(rc == 0, "libvirtd answers (%s, %s)" % (
    "started by this test" if ours else "already running",
    hv.group(1) if hv else out))

# --- the domain ----------------------------------------------------------

try:
    kdir = vmrun.fetch_kernel()
except RuntimeError as e:
    t.bail(str(e))
initrd = os.path.join(work, "initrd.gz")
vmrun.build_initrd(initrd, kdir, AGENT, AGENT_CMD, CONF, disks=("data",))
disk = vmrun.make_disk(os.path.join(work, "data.qcow2"), "data", "64M",
                       fmt="qcow2")
shell_sock = os.path.join(work, "shell.sock")
console = os.path.join(work, "console.log")
kvm = vmrun.accel() == "kvm"
xml = """<domain type='%(type)s'>
  <name>%(name)s</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>%(kernel)s</kernel>
    <initrd>%(initrd)s</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <features><acpi/></features>
  %(cpu)s
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='unsafe'/>
      <source file='%(disk)s'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <controller type='usb' model='none'/>
    <controller type='virtio-serial' index='0'/>
    <channel type='unix'>
      <source mode='bind'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <channel type='unix'>
      <source mode='bind' path='%(shell)s'/>
      <target type='virtio' name='org.fsfa.shell'/>
    </channel>
    <serial type='file'>
      <source path='%(console)s'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
  <seclabel type='static' model='dac' relabel='no'>
    <label>+0:+0</label>
  </seclabel>
</domain>
""" % {"type": "kvm" if kvm else "qemu",
       "cpu": "<cpu mode='host-passthrough'/>" if kvm else
       "<cpu mode='custom' match='exact'><model fallback='allow'>qemu64"
       "</model></cpu>",
       "name": DOM, "kernel": os.path.join(kdir, "vmlinuz"),
       "initrd": initrd, "disk": disk, "shell": shell_sock,
       "console": console}
xmlfile = os.path.join(work, "domain.xml")
with open(xmlfile, "w") as f:
    f.write(xml)


def undefine():
    virsh("destroy", DOM, timeout=60)
    virsh("undefine", DOM, "--snapshots-metadata", timeout=60)


t.cleanup(undefine)
t0 = time.monotonic()
rc, out = virsh("define", xmlfile)
if rc != 0:
    t.bail("virsh define: " + out)
rc, out = virsh("start", DOM)
if rc != 0:
    t.bail("virsh start: " + out)
t_start = time.monotonic()
ready = None
while time.monotonic() - t_start < 120:
    if agent_cmd("guest-ping", timeout=5) == {"return": {}}:
        ready = time.monotonic() - t_start
        break
    time.sleep(0.3)
if not t.ok(ready is not None, "the agent answers through libvirt "
            "(guest-ping, %s after virsh start)"
            % ("%.1f s" % ready if ready else "not in 120 s")):
    try:
        with open(console) as f:
            t.diag(f.read()[-3000:])
    except OSError:
        pass
    t.bail("no agent")
sh = GuestShell(shell_sock, 30)
# libvirt logs "not connected" until the guest opens the port: judge the
# log from here on.
log_from = os.path.getsize(liblog) if ours and os.path.exists(liblog) else 0


def hooks_log():
    return [x for x in sh.out("cat /run/hooks.log 2>/dev/null").splitlines()
            if x]


def frozen():
    out = sh.out("fsfreeze --freeze /data 2>&1 && fsfreeze --unfreeze /data"
                 " && echo THAWED")
    return "busy" in out.lower() and "THAWED" not in out


def status():
    return agent_cmd("guest-fsfreeze-status")


# --- freeze and thaw through libvirt -------------------------------------

t.eq(status(), {"return": "thawed"}, "qemu-agent-command "
     "guest-fsfreeze-status: thawed")
sh.run(": >/run/hooks.log")
rc, out = virsh("domfsfreeze", DOM)
t.ok(rc == 0 and "Froze 1 filesystem" in out, "virsh domfsfreeze: %s"
     % out)
t.eq(status(), {"return": "frozen"}, "status: frozen")
t.ok(frozen(), "/data is frozen in the guest (FIFREEZE probe: EBUSY)")
t.eq(hooks_log(), FREEZE_HOOKS, "the freeze hooks ran, in order")
rc, out = virsh("domfsthaw", DOM)
t.ok(rc == 0 and "Thawed 1 filesystem" in out, "virsh domfsthaw: %s" % out)
t.eq(status(), {"return": "thawed"}, "status: thawed")
t.ok(not frozen(), "/data is thawed in the guest")
t.eq(hooks_log(), FREEZE_HOOKS + THAW_HOOKS, "the thaw hooks ran, in "
     "reverse")

sh.run(": >/run/hooks.log")
rc, out = virsh("domfsfreeze", DOM, "--mountpoint", "/data")
t.ok(rc == 0 and "Froze 1 filesystem" in out, "virsh domfsfreeze "
     "--mountpoint /data (guest-fsfreeze-freeze-list): %s" % out)
t.ok(frozen(), "/data is frozen")
r = agent_cmd(REPORT)
rep = r.get("return") if isinstance(r, dict) else None
t.ok(isinstance(rep, dict) and rep.get("status") == "frozen",
     "qemu-agent-command %s while frozen: %s" % (REPORT, json.dumps(r)[:300]))
rc, out = virsh("domfsthaw", DOM)
t.ok(rc == 0 and "Thawed 1 filesystem" in out, "virsh domfsthaw: %s" % out)
r = agent_cmd(REPORT)
rep = r.get("return") if isinstance(r, dict) else None
last = rep.get("last") if isinstance(rep, dict) else None
t.ok(isinstance(rep, dict) and rep.get("status") == "thawed" and
     isinstance(last, dict), "%s after the thaw: status thawed, the last "
     "operation recorded" % REPORT)
if isinstance(last, dict):
    t.diag("last: %s" % json.dumps(last)[:600])

# --- a quiesced snapshot -------------------------------------------------

sh.run(": >/run/hooks.log")
overlay = os.path.join(work, "data.snap1.qcow2")
rc, out = virsh("snapshot-create-as", DOM, "snap1", "--disk-only",
                "--quiesce", "--atomic", "--diskspec",
                "vda,snapshot=external,file=%s" % overlay)
t.ok(rc == 0, "virsh snapshot-create-as --disk-only --quiesce: %s" % out)
t.ok(os.path.exists(overlay), "the snapshot's overlay exists and the domain "
     "writes to it: %s" % virsh("domblklist", DOM)[1].splitlines()[-1:])
t.eq(hooks_log(), FREEZE_HOOKS + THAW_HOOKS, "the snapshot froze the guest "
     "(freeze hooks) and thawed it afterwards (thaw hooks)")
t.eq(status(), {"return": "thawed"}, "status after the snapshot: thawed")
t.ok(not frozen(), "/data is thawed after the snapshot")
# The snapshot is the old image, now the overlay's backing file: it must
# show a file system frozen at that instant. ext4's freeze flushes the
# journal and clears needs_recovery; a snapshot of a live ext4 that the
# ticker writes to keeps it.
base_raw = os.path.join(work, "base.raw")
subprocess.run(["qemu-img", "convert", "-U", "-q", "-f", "qcow2", "-O", "raw",
                disk, base_raw], check=True)
feat = subprocess.run(["dumpe2fs", "-h", base_raw], stdout=subprocess.PIPE,
                      stderr=subprocess.DEVNULL,
                      universal_newlines=True).stdout
m = re.search(r"Filesystem features:\s*(.*)", feat)
t.ok(m is not None and "needs_recovery" not in m.group(1),
     "the snapshot holds a frozen file system: no needs_recovery (%s)"
     % (m.group(1) if m else "no superblock"))
p = subprocess.run(["e2fsck", "-fn", base_raw], stdout=subprocess.PIPE,
                   stderr=subprocess.STDOUT, universal_newlines=True)
if not t.ok(p.returncode == 0, "the snapshot passes e2fsck -fn"):
    t.diag(p.stdout)
# The control: the live disk (the overlay over the snapshot), mounted and
# not frozen, does carry the flag.
subprocess.run(["qemu-img", "convert", "-U", "-q", "-f", "qcow2", "-O", "raw",
                overlay, base_raw], check=True)
feat = subprocess.run(["dumpe2fs", "-h", base_raw], stdout=subprocess.PIPE,
                      stderr=subprocess.DEVNULL,
                      universal_newlines=True).stdout
t.ok("needs_recovery" in feat, "control: the live disk, mounted and not "
     "frozen, has needs_recovery set")
os.unlink(base_raw)

# --- still trusted -------------------------------------------------------

t.eq(agent_cmd("guest-ping"), {"return": {}}, "after all of it, "
     "qemu-agent-command guest-ping still works (libvirt never marked the "
     "agent broken)")
if ours:
    with open(liblog, errors="replace") as f:
        f.seek(log_from)
        log = f.read()
    errs = [x for x in log.splitlines() if re.search(AGENT_ERRORS, x) or
            (re.search(r": (error|warning) : ", x) and "gent" in x)]
    if not t.ok(not errs, "libvirtd's log has no agent errors"):
        for x in errs[:10]:
            t.diag(x)
    lines = re.findall(r"qemuAgentIOProcessLine:\d+ : Line \[(.*)\]$", log,
                       re.M)
    bad = []
    for x in lines:
        try:
            v = json.loads(x)
            if not isinstance(v, dict) or not ("return" in v or
                                               "error" in v):
                bad.append(x)
        except ValueError:
            bad.append(x)
    t.ok(lines and not bad, "every line libvirt read from the agent is a "
         "JSON reply (%d lines)" % len(lines))
    for x in bad[:5]:
        t.diag("bad: %r" % x)
else:
    t.skip(2, "libvirtd was already running: its log is not ours to read")

# --- power off -----------------------------------------------------------

sh.start("exec /sbin/fsfa-stop -f")
off = False
for _ in range(150):
    if virsh("domstate", DOM)[1].startswith("shut off"):
        off = True
        break
    time.sleep(0.2)
sh.close()
t.ok(off, "the guest powered off")
if off:
    rc, out = vmrun.fsck(overlay, "qcow2")
    if not t.ok(rc == 0, "the disk (overlay over the snapshot) passes "
                "e2fsck -fn"):
        t.diag(out)
else:
    t.skip(1, "the guest is still running")
t.diag("t9020 took %.0f s (domain started %.1f s after define)"
       % (time.monotonic() - T0, t_start - t0))
t.done()
