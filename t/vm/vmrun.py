# SPDX-License-Identifier: ISC
"""Run the t9 guest under QEMU: kernel, initramfs, disks, sockets.

Everything lives in one directory the caller owns (a test's mktemp dir):
qga.sock (the agent's port), shell.sock (org.fsfa.shell), qmp.sock,
console.log (the guest's serial console, the agent's stderr included),
qemu.log. QEMU stays our child process, so the test can always end it.

Acceleration: KVM only when /proc/cpuinfo has vmx or svm and /dev/kvm can be
opened read-write; otherwise TCG. A host that is itself a VM may offer a
/dev/kvm that boots nothing in useful time (see shared/vmrig's README), and
TCG boots the guest in about 5 s. FSFA_VM_ACCEL=tcg|kvm overrides.
"""

import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time

import initramfs
from qgaclient import AgentConn, GuestShell, Timeout

HERE = os.path.dirname(os.path.abspath(__file__))
QEMU = "qemu-system-x86_64"


def missing_tools():
    """Host programs the guest tests need and this machine lacks."""
    need = {QEMU: "qemu-system-x86", "mkfs.ext4": "e2fsprogs",
            "e2fsck": "e2fsprogs", "depmod": "kmod",
            "apt-get": "apt", "dpkg-deb": "dpkg", "ldd": "libc-bin",
            "flock": "util-linux"}
    out = []
    for prog, pkg in sorted(need.items()):
        if shutil.which(prog) is None and \
                not os.path.exists(os.path.join("/usr/sbin", prog)) and \
                not os.path.exists(os.path.join("/sbin", prog)):
            out.append("%s (%s)" % (prog, pkg))
    bb = initramfs.BUSYBOX
    if not os.path.exists(bb) or b"not a dynamic" not in subprocess.run(
            ["ldd", bb], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT).stdout:
        out.append("a static %s (busybox-static)" % bb)
    return out


def accel():
    a = os.environ.get("FSFA_VM_ACCEL", "auto")
    if a != "auto":
        return a
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
        if (" vmx" in flags or " svm" in flags) and \
                os.access("/dev/kvm", os.R_OK | os.W_OK):
            return "kvm"
    except OSError:
        pass
    return "tcg"


def cache_dir():
    return os.environ.get("FSFA_VM_CACHE", "/var/tmp/fsfreeze-agent-vm")


def lock(name, timeout=600.0):
    """Hold an exclusive lock in the cache directory until the process
    exits; returns the seconds waited, or None on timeout."""
    d = cache_dir()
    os.makedirs(d, exist_ok=True)
    f = open(os.path.join(d, "." + name + ".lock"), "w")
    t0 = time.monotonic()
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _held.append(f)
            return time.monotonic() - t0
        except BlockingIOError:
            if time.monotonic() - t0 > timeout:
                f.close()
                return None
            time.sleep(0.5)


_held = []


def fetch_kernel():
    """The cached kernel directory (t/vm/fetch-kernel.sh)."""
    p = subprocess.run(["sh", os.path.join(HERE, "fetch-kernel.sh")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True)
    if p.returncode != 0:
        raise RuntimeError("fetch-kernel.sh failed: " + p.stderr.strip())
    return p.stdout.strip().splitlines()[-1]


def make_disk(path, label, size="64M", fmt="raw"):
    """A fresh ext4 image with a label (rc mounts LABEL on /LABEL)."""
    raw = path if fmt == "raw" else path + ".raw"
    with open(raw, "wb") as f:
        f.truncate(_bytes(size))
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", label, raw], check=True)
    if fmt != "raw":
        subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", fmt,
                        raw, path], check=True)
        os.unlink(raw)
    return path


def _bytes(size):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if size[-1] in mult:
        return int(size[:-1]) * mult[size[-1]]
    return int(size)


def fsck(path, fmt="raw"):
    """(status, output) of e2fsck -fn on an image (qcow2 via a raw copy)."""
    img = path
    if fmt != "raw":
        img = path + ".fsck.raw"
        subprocess.run(["qemu-img", "convert", "-U", "-q", "-f", fmt, "-O",
                        "raw", path, img], check=True)
    p = subprocess.run(["e2fsck", "-fn", img], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True)
    if img != path:
        os.unlink(img)
    return p.returncode, p.stdout


def _die_with_parent():
    """In QEMU's child before exec: a test killed outright (SIGKILL) takes
    its guest with it instead of leaving it running."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PDEATHSIG
    except (OSError, AttributeError):
        pass


class VM:
    def __init__(self, dir, kernel_dir, initrd, disks=(), append="",
                 mem=256):
        self.dir = dir
        self.kdir = kernel_dir
        self.initrd = initrd
        self.disks = list(disks)  # (path, format)
        self.append = append
        self.mem = mem
        self.proc = None
        self.accel = accel()
        self.qga_sock = os.path.join(dir, "qga.sock")
        self.shell_sock = os.path.join(dir, "shell.sock")
        self.qmp_sock = os.path.join(dir, "qmp.sock")
        self.console = os.path.join(dir, "console.log")
        self.t_start = None

    def command(self):
        if self.accel == "kvm":
            acc = ["-accel", "kvm", "-cpu", "host"]
        else:
            acc = ["-accel", self.accel, "-cpu", "qemu64"]
        cmd = [QEMU, "-nodefaults", "-no-user-config", "-no-reboot",
               "-display", "none", "-machine", "pc"] + acc + [
            "-m", str(self.mem), "-smp", "1",
            "-kernel", os.path.join(self.kdir, "vmlinuz"),
            "-initrd", self.initrd,
            "-append", "console=ttyS0 quiet panic=-1 " + self.append,
            "-serial", "file:" + self.console,
            "-qmp", "unix:%s,server=on,wait=off" % self.qmp_sock,
            "-device", "virtio-serial-pci,id=vser0",
            "-chardev", "socket,id=qga0,path=%s,server=on,wait=off"
            % self.qga_sock,
            "-device", "virtserialport,bus=vser0.0,chardev=qga0,name="
            + initramfs.AGENT_PORT,
            "-chardev", "socket,id=sh0,path=%s,server=on,wait=off"
            % self.shell_sock,
            "-device", "virtserialport,bus=vser0.0,chardev=sh0,name="
            + initramfs.SHELL_PORT]
        for path, fmt in self.disks:
            cmd += ["-drive", "file=%s,if=virtio,format=%s,cache=unsafe"
                    % (path, fmt)]
        return cmd

    def start(self):
        for p in (self.qga_sock, self.shell_sock, self.qmp_sock,
                  self.console):
            if os.path.exists(p):
                os.unlink(p)
        self.log = open(os.path.join(self.dir, "qemu.log"), "ab")
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log,
                                     preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.qga_sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("QEMU did not start: " + self.qemu_log())
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def qemu_log(self):
        try:
            with open(os.path.join(self.dir, "qemu.log"), "rb") as f:
                return f.read().decode(errors="replace")[-2000:]
        except OSError:
            return ""

    def console_tail(self, n=30):
        try:
            with open(self.console, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def agent(self, timeout=10.0, echo=None):
        return AgentConn(self.qga_sock, timeout, echo)

    def shell(self, timeout=30.0):
        return GuestShell(self.shell_sock, timeout)

    def qmp(self, cmd):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(self.qmp_sock)
        f = s.makefile("rwb")
        f.readline()
        f.write(b'{"execute":"qmp_capabilities"}\n')
        f.flush()
        f.readline()
        f.write(json.dumps({"execute": cmd}).encode() + b"\n")
        f.flush()
        try:
            return f.readline()
        finally:
            s.close()

    def wait_exit(self, timeout):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        self.log.close()
        return True

    def poweroff(self, sh=None, timeout=30.0):
        """Clean power-off through the shell port (unmounts the disks).
        True when the guest said "reboot: Power down" and QEMU exited."""
        if not self.alive():
            return False
        own = sh is None
        try:
            if own:
                sh = self.shell(10)
            sh.start("exec /sbin/fsfa-stop -f")
        except (OSError, Timeout):
            pass
        clean = self.wait_exit(timeout)
        if own and sh is not None:
            sh.close()
        if not clean:
            self.kill()
            return False
        with open(self.console, "rb") as f:
            return b"reboot: Power down" in f.read()

    def kill(self):
        if not self.alive():
            return
        try:
            self.qmp("quit")
        except OSError:
            pass
        if not self.wait_exit(5):
            self.proc.kill()
            self.wait_exit(60)


def build_initrd(out, kdir, agent, agent_cmd, conf=None, disks=("data",),
                 files=(), hooks=None):
    return initramfs.build(out, kdir, agent, agent_cmd, conf, disks, files,
                           hooks)
