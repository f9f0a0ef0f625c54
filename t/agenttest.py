# SPDX-License-Identifier: ISC
"""Helpers for the integration tests: TAP output and a running agent.

A test makes a TAP object, starts the built agent in unix-listen mode with
Agent(), talks to it with send()/request()/replies(), and stops it with
stop(), which sends SIGTERM and returns the exit status. Only the standard
library is used, so the tests run on a bare Debian 12 with python3.
"""

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

AGENT = os.environ.get("AGENT") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "src", "fsfreeze-agent")


class TAP:
    """TAP producer. Failures are 'not ok' lines; exit status stays 0."""

    def __init__(self, plan=None):
        self.n = 0
        self.failed = 0
        self.planned = plan
        self._cleanups = []
        # A test that dies of an exception still stops its agents.
        atexit.register(self.run_cleanups)
        if plan is not None:
            print("1..%d" % plan, flush=True)

    def ok(self, cond, name):
        self.n += 1
        if not cond:
            self.failed += 1
        print("%sok %d - %s" % ("" if cond else "not ", self.n, name), flush=True)
        return bool(cond)

    def eq(self, got, want, name):
        r = self.ok(got == want, name)
        if not r:
            self.diag("wanted: %r" % (want,))
            self.diag("   got: %r" % (got,))
        return r

    def diag(self, msg):
        for line in str(msg).splitlines() or [""]:
            print("# " + line, flush=True)

    def skip(self, n, why):
        for _ in range(n):
            self.n += 1
            print("ok %d # SKIP %s" % (self.n, why), flush=True)

    @staticmethod
    def skip_all(why):
        print("1..0 # SKIP %s" % why, flush=True)
        sys.exit(0)

    def bail(self, why):
        print("Bail out! %s" % why, flush=True)
        self.run_cleanups()
        sys.exit(255)

    def cleanup(self, fn):
        """Run fn at done() or bail(), last registered first."""
        self._cleanups.append(fn)

    def run_cleanups(self):
        while self._cleanups:
            fn = self._cleanups.pop()
            try:
                fn()
            except Exception as e:  # cleanup must go on
                self.diag("cleanup failed: %r" % (e,))

    def done(self):
        self.run_cleanups()
        if self.planned is None:
            print("1..%d" % self.n, flush=True)
        sys.exit(0)


def parse_replies(data):
    """Split agent output into (delimited, value) pairs, one per line.

    delimited is True when the line was preceded by one 0xFF byte. A line
    that is not valid JSON raises ValueError: the agent must never write one.
    """
    out = []
    for raw in data.split(b"\n"):
        if raw == b"":
            continue
        delim = raw.startswith(b"\xff")
        if delim:
            raw = raw[1:]
        out.append((delim, json.loads(raw.decode("ascii"))))
    return out


class Agent:
    """The built agent in unix-listen mode on a socket in a private dir."""

    def __init__(self, conf="", args=(), env=None, tmpdir=None, binary=None,
                 start=True, wait=5.0):
        self.dir = tmpdir or tempfile.mkdtemp(prefix="fsfa-test-")
        self._own_dir = tmpdir is None
        self.sock = os.path.join(self.dir, "agent.sock")
        self.conf = os.path.join(self.dir, "agent.conf")
        self.stderr_path = os.path.join(self.dir, "agent.stderr")
        self.binary = binary or AGENT
        with open(self.conf, "w") as f:
            f.write(conf)
        self.args = list(args)
        self.env = dict(os.environ)
        self.env.setdefault("FSFREEZE_AGENT_LOG_SOCKET",
                            os.path.join(self.dir, "nolog"))
        if env:
            self.env.update(env)
        self.proc = None
        self.conn = None
        if start:
            self.start(wait)

    def command(self):
        return [self.binary, "-m", "unix-listen", "-p", self.sock,
                "-c", self.conf] + self.args

    def start(self, wait=5.0):
        self.errf = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=self.errf, stderr=self.errf,
                                     env=self.env)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("agent exited with %s: %s" %
                                   (self.proc.returncode, self.stderr()))
            if os.path.exists(self.sock):
                try:
                    self.connect()
                    return
                except OSError:
                    pass
            time.sleep(0.01)
        raise RuntimeError("agent did not listen on %s" % self.sock)

    def connect(self):
        self.close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.sock)
        self.conn = s
        self.buf = b""
        return s

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.conn.sendall(data)

    def read_lines(self, n, timeout=5.0):
        """Read until n reply lines have arrived; returns the raw lines."""
        deadline = time.monotonic() + timeout
        while self.buf.count(b"\n") < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.conn.settimeout(left)
            try:
                chunk = self.conn.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            self.buf += chunk
        lines = []
        while len(lines) < n and b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            lines.append(line)
        return lines

    def replies(self, n, timeout=5.0):
        """n replies as (delimited, value) pairs."""
        return parse_replies(b"\n".join(self.read_lines(n, timeout)) + b"\n")

    def request(self, req, timeout=5.0):
        """Send one request (dict or raw string) and return the reply value."""
        if isinstance(req, dict):
            req = json.dumps(req)
        self.send(req + "\n")
        r = self.replies(1, timeout)
        if not r:
            return None
        return r[0][1]

    def silent(self, timeout=0.3):
        """True if nothing arrives within timeout."""
        return not self.read_lines(1, timeout)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signal the agent and return its exit status (None if it hung)."""
        self.close()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.errf.close()
                return None
        self.errf.close()
        return self.proc.returncode

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
