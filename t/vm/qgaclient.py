# SPDX-License-Identifier: ISC
"""Host side of the t9 guest: the agent's socket and the guest's shell.

AgentConn speaks qemu-ga's protocol on the unix socket QEMU puts in front of
the virtio-serial port org.qemu.guest_agent.0. It keeps every byte it sent
and every line it got (transcript), checks each line as it arrives (one JSON
object with "return" or "error", a 0xFF only before the reply to a
guest-sync-delimited) and counts the bad ones, so a test can assert that the
agent never wrote a line libvirt would choke on.

GuestShell drives the root shell that the guest's init keeps on the port
org.fsfa.shell. Only the standard library is used.
"""

import base64
import json
import random
import socket
import time


class Timeout(Exception):
    pass


def connect_unix(path, timeout):
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


class AgentConn:
    def __init__(self, path, timeout=10.0, echo=None):
        self.path = path
        self.echo = echo  # callable(str) to show traffic as it happens
        self.buf = b""
        self.transcript = []  # (monotonic, ">>" or "<<", bytes)
        self.bad_lines = []
        self.sock = connect_unix(path, timeout)
        self.t_connect = time.monotonic()
        self._sync_ids = set()

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _show(self, way, data):
        self.transcript.append((time.monotonic(), way, data))
        if self.echo:
            text = data.decode("ascii", "backslashreplace")
            text = text.replace("\\xff", "<FF>").rstrip("\n")
            for line in text.split("\n"):
                self.echo("host %s agent  %s" % ("->" if way == ">>" else "<-",
                                                line))

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self._show(">>", data)
        self.sock.sendall(data)

    def _check(self, line):
        """Judge one line as libvirt would, plus the 0xFF rule."""
        raw = line[1:] if line.startswith(b"\xff") else line
        why = None
        try:
            v = json.loads(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            v, why = None, "not ASCII JSON"
        if why is None and not isinstance(v, dict):
            why = "not a JSON object"
        elif why is None and "return" not in v and "error" not in v:
            why = "neither return nor error"
        elif why is None and b"\xff" in raw:
            why = "0xFF inside a line"
        elif why is None and line.startswith(b"\xff") and \
                v.get("return") not in self._sync_ids:
            why = "0xFF before a reply that is not a guest-sync-delimited's"
        if why:
            self.bad_lines.append((why, line))
        return v

    def read_line(self, timeout):
        """One reply line: (raw bytes, value or None)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout("no reply within %.1f s" % timeout)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise Timeout("no reply within %.1f s" % timeout)
            if not chunk:
                raise ConnectionError("agent socket closed by QEMU")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        self._show("<<", line + b"\n")
        return line, self._check(line)

    def reply(self, timeout=10.0):
        return self.read_line(timeout)[1]

    def sync(self, timeout=15.0, attempt=1.0):
        """0xFF + guest-sync-delimited until our id comes back; drops
        everything before it. Returns the seconds it took."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            sid = random.randint(1, 2**31 - 1)
            self._sync_ids.add(sid)
            self.send(b"\xff" + json.dumps({
                "execute": "guest-sync-delimited",
                "arguments": {"id": sid}}).encode() + b"\n")
            until = min(deadline, time.monotonic() + attempt)
            try:
                while True:
                    line, v = self.read_line(max(0.0, until - time.monotonic()))
                    if isinstance(v, dict) and v.get("return") == sid:
                        if not line.startswith(b"\xff"):
                            self.bad_lines.append(
                                ("sync-delimited reply without 0xFF", line))
                        return time.monotonic() - t0
            except Timeout:
                if time.monotonic() >= deadline:
                    raise Timeout("guest-sync-delimited: no answer in %.0f s"
                                  % timeout)

    def request(self, cmd, args=None, timeout=10.0):
        """Send one command; the whole reply object."""
        req = {"execute": cmd}
        if args is not None:
            req["arguments"] = args
        self.send(json.dumps(req, separators=(",", ":")).encode() + b"\n")
        return self.reply(timeout)

    def ret(self, cmd, args=None, timeout=10.0):
        """The "return" value, or the "error" object as {"error": ...}."""
        r = self.request(cmd, args, timeout)
        if isinstance(r, dict) and "return" in r:
            return r["return"]
        return r


class GuestShell:
    """Commands in the guest through the org.fsfa.shell port."""

    def __init__(self, path, timeout=15.0):
        self.sock = connect_unix(path, timeout)
        self.buf = b""
        self.synced = False

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def start(self, cmd):
        tok = "@@fsfa%08x" % random.randint(0, 2**32 - 1)
        line = "{ %s\n} </dev/null 2>&1; echo \"%s $?\"\n" % (cmd, tok)
        self.sock.sendall(line.encode())
        return tok

    def wait(self, tok, timeout=15.0):
        deadline = time.monotonic() + timeout
        marker = tok.encode() + b" "
        while True:
            i = self.buf.find(marker)
            j = self.buf.find(b"\n", i) if i >= 0 else -1
            if j >= 0:
                out = self.buf[:i].decode(errors="replace")
                rc = int(self.buf[i + len(marker):j] or b"255")
                self.buf = self.buf[j + 1:]
                return rc, out
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout("guest command did not finish in %.1f s"
                              % timeout)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise Timeout("guest command did not finish in %.1f s"
                              % timeout)
            if not chunk:
                raise ConnectionError("guest shell socket closed")
            self.buf += chunk

    def run(self, cmd, timeout=15.0):
        """(exit status, output) of cmd, run by the guest's root shell."""
        if not self.synced:
            # Drop whatever an earlier shell session left on the port.
            self.wait(self.start("true"), timeout)
            self.synced = True
        return self.wait(self.start(cmd), timeout)

    def put(self, path, data, mode="0644"):
        """Write data (bytes or str) to a file in the guest."""
        if isinstance(data, str):
            data = data.encode()
        rc, out = self.run("echo %s | base64 -d >%s && chmod %s %s" % (
            base64.b64encode(data).decode(), path, mode, path))
        if rc != 0:
            raise RuntimeError("cannot write %s in the guest: %s"
                               % (path, out))

    def out(self, cmd, timeout=15.0):
        return self.run(cmd, timeout)[1]
