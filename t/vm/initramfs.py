# SPDX-License-Identifier: ISC
"""Build the t9 guest's initramfs: busybox, the agent, its conf and hooks.

The archive is written by hand in the kernel's "newc" cpio format, so every
entry gets uid 0, its mode and device nodes without root and without a
staging directory: the guest's files come from this tree (t/vm/guest/) and
from the host (busybox-static, the agent and the libraries ldd names).

Guest layout:
  /init -> busybox init, /etc/inittab (below), /etc/init.d/rc (sysinit)
  /usr/sbin/<agent> and its libraries, /etc/fsfreeze-agent.conf,
  /etc/fsfreeze-agent/hooks.d/{10-a,20-b,30-ctl}
  /sbin/fsfa-shell (root shell on port org.fsfa.shell), /sbin/fsfa-ticker
  (/data/ticks), /sbin/fsfa-stop (shutdown)
  /etc/fsfa-disks: the labels rc mounts on /LABEL
"""

import gzip
import io
import os
import re
import stat
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
GUEST = os.path.join(HERE, "guest")
BUSYBOX = "/bin/busybox"
MODULES = ("virtio_pci", "virtio_blk", "virtio_console")
SHELL_PORT = "org.fsfa.shell"
AGENT_PORT = "org.qemu.guest_agent.0"


class Newc:
    """A newc cpio archive in memory; parents must be added first."""

    def __init__(self):
        self.out = io.BytesIO()
        self.ino = 1000
        self.names = set()

    def _entry(self, name, mode, data=b"", rdev=(0, 0)):
        name = name.lstrip("/")
        if name in self.names:
            return
        self.names.add(name)
        self.ino += 1
        nb = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, 0,
                  len(data), 0, 0, rdev[0], rdev[1], len(nb), 0)
        hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.out.write(hdr + nb)
        self.out.write(b"\0" * (-(len(hdr) + len(nb)) % 4))
        self.out.write(data)
        self.out.write(b"\0" * (-len(data) % 4))

    def dir(self, name, mode=0o755):
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            self._entry("/".join(parts[:i]), stat.S_IFDIR | mode)

    def file(self, name, data, mode=0o644):
        self.dir(os.path.dirname(name.strip("/")) or ".")
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name, target):
        self.dir(os.path.dirname(name.strip("/")) or ".")
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name, major, minor, mode=0o600):
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self):
        self._entry("TRAILER!!!", 0)
        return self.out.getvalue()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def libraries(binary):
    """The shared objects a binary needs (ldd), loader included."""
    p = subprocess.run(["ldd", binary], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True)
    libs = []
    for line in p.stdout.splitlines():
        m = re.search(r"(/\S+) \(0x", line)
        if m:
            libs.append(m.group(1))
    return libs


def add_binary(a, src, dst):
    a.file(dst, read(src), 0o755)
    for lib in libraries(src):
        # The loader and libraries go where ldd found them; /lib64 and the
        # multiarch directory are real directories in the guest.
        a.file(lib, read(os.path.realpath(lib)), 0o755)


def module_order(kdir, release, wanted):
    """Modules to insmod, dependencies first, from depmod's modules.dep."""
    base = os.path.join(kdir, "lib", "modules", release)
    deps = {}
    with open(os.path.join(base, "modules.dep")) as f:
        for line in f:
            mod, _, rest = line.partition(":")
            deps[mod] = rest.split()
    byname = {}
    for mod in deps:
        n = os.path.basename(mod).split(".ko")[0].replace("-", "_")
        byname[n] = mod
    order = []

    def visit(mod):
        if mod in order:
            return
        for d in deps.get(mod, []):
            visit(d)
        order.append(mod)

    for w in wanted:
        if w not in byname:
            continue  # built in (modules.builtin)
        visit(byname[w])
    return base, order


def decompress(path):
    data = read(path)
    if path.endswith(".xz"):
        import lzma
        return lzma.decompress(data)
    if path.endswith(".gz"):
        return gzip.decompress(data)
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-qdc", path], check=True,
                              stdout=subprocess.PIPE).stdout
    return data


def build(out, kdir, agent, agent_cmd, conf=None, disks=("data", "data2"),
          files=(), hooks=None):
    """Write the gzip'd initramfs to out.

    agent: host path of the agent binary (copied to /usr/sbin/NAME);
    agent_cmd: the inittab respawn command line; conf: text of
    /etc/fsfreeze-agent.conf or None; files: (guest path, bytes, mode);
    hooks: (name, bytes) for the hook directory, default t/vm/guest/hooks.
    """
    release = read(os.path.join(kdir, "release")).decode().strip()
    a = Newc()
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc/init.d", "proc",
              "sys", "dev", "run", "tmp", "root", "lib", "lib64", "var"):
        a.dir(d)
    a.symlink("var/run", "../run")
    # The kernel opens /dev/console before /init, ahead of devtmpfs.
    a.chardev("dev/console", 5, 1)
    a.chardev("dev/null", 1, 3, 0o666)

    a.file("bin/busybox", read(BUSYBOX), 0o755)
    applets = subprocess.run([BUSYBOX, "--list-full"], check=True,
                             stdout=subprocess.PIPE,
                             universal_newlines=True).stdout.split()
    for path in applets:
        depth = path.count("/")
        a.symlink(path, "../" * depth + "bin/busybox")
    a.symlink("init", "bin/busybox")

    add_binary(a, agent, "usr/sbin/" + os.path.basename(agent))

    base, order = module_order(kdir, release, MODULES)
    names = []
    for mod in order:
        rel = re.sub(r"\.(xz|gz|zst)$", "", mod)
        a.file("lib/modules/" + rel, decompress(os.path.join(base, mod)))
        names.append(rel)
    a.file("etc/modules.order", "".join(n + "\n" for n in names).encode())

    inittab = ("::sysinit:/etc/init.d/rc\n"
               "::respawn:%s\n"
               "::respawn:/sbin/fsfa-shell\n"
               "::once:/sbin/fsfa-ticker\n"
               "::shutdown:/sbin/fsfa-stop\n") % agent_cmd
    a.file("etc/inittab", inittab.encode())
    a.file("etc/init.d/rc", read(os.path.join(GUEST, "rc")), 0o755)
    for name in ("shell", "ticker", "stop"):
        a.file("sbin/fsfa-" + name, read(os.path.join(GUEST, name)), 0o755)
    a.file("etc/fsfa-disks", "".join(d + "\n" for d in disks).encode())
    a.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    a.file("etc/group", b"root:x:0:\n")
    a.symlink("etc/mtab", "../proc/self/mounts")
    if conf is not None:
        a.file("etc/fsfreeze-agent.conf", conf.encode())
    if hooks is None:
        d = os.path.join(GUEST, "hooks")
        hooks = [(h, read(os.path.join(d, h))) for h in sorted(os.listdir(d))]
    a.dir("etc/fsfreeze-agent/hooks.d")
    for name, data in hooks:
        a.file("etc/fsfreeze-agent/hooks.d/" + name, data, 0o755)
    a.file("etc/qemu/fsfreeze-hook",
           read(os.path.join(GUEST, "qemu-ga-hook")), 0o755)
    for dst, data, mode in files:
        a.file(dst, data, mode)

    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(gzip.compress(a.finish(), compresslevel=1))
    os.replace(tmp, out)
    return out
