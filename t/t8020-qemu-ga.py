# SPDX-License-Identifier: ISC
"""t8020: differential test against Debian's qemu-ga 7.2.

The same byte sequences go to qemu-ga (unix-listen, private state dir) and
to the built agent ($AGENT), each case on a fresh connection, and the reply
lines are compared: as JSON values (strictly typed, member order included,
the 0xFF prefix included) and, for well-formed requests, as raw bytes
(protocol.md 6: every well-formed request gets the byte-identical reply).

After each case a fence, {"execute":"guest-sync","arguments":{"id":N}}, is
written in a separate write; everything read before {"return": N} is the
case's output. So the number of replies is exact without timing guesses,
and a case whose input would leave a parser stuck shows up as a missing
fence. qemu-ga keeps one parser for the whole process (protocol.md 6.2), so
when its fence does not come back it is restarted before the next case.

INTENDED DIFFERENCES (protocol.md 6), each applied by one case mode below:
  D1 "ff"     A 0xFF or 0xFE byte from the host is a silent reset: qemu-ga's
              "JSON parse error, stray '...\\uFFFD'" lines have no
              counterpart in ours (6.4).
  D2 "first"  One error per malformed message: ours sends exactly one reply,
              equal to qemu-ga's FIRST error (its desc kept); qemu-ga's
              cascade (6.1) is not reproduced.
  D3 info     guest-info lists only our 8 commands, in qemu-ga's order and
              element layout, with our own version string (3.4); downstream
              extensions ("__" names, QAPI's rule) may precede them.
  D4 inf      A number that overflows a double is echoed as its token
              (1e400), never as qemu-ga's non-JSON inf (6.3).
  D5 conn     A fresh parser per connection: a half request left by one
              client does not eat the next client's request (6.2).
  D6 unclosed An unclosed object is cut at the next line that starts with
              '{': one error, and that request is answered (6.1); qemu-ga
              swallows everything until its braces balance.
  D7 limits   Nesting depth 32 and 64 KiB per message: one error with
              qemu-ga's limit desc, where qemu-ga accepts (6.1, 6.16).
  D8 either   QEMU extensions no host uses (single-quoted strings, C0 80 as
              U+0000) may be accepted like qemu-ga or rejected with exactly
              one error.
Safety: nothing here sends guest-fsfreeze-freeze, and freeze-list only with
arguments that fail type checking before anything runs (plus
{"mountpoints":[]} to ours alone, which is also confined by its config).
guest-fsfreeze-thaw goes to ours only (qemu-ga's thaws every filesystem).
"""

import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from agenttest import AGENT, TAP

QEMU_GA = os.environ.get("QEMU_GA", "/usr/sbin/qemu-ga")
FENCE_BASE = 8020000000


# ------------------------------------------------------------- safety -----
def assert_safe(data, to_qga):
    """Refuse any byte string that could freeze a filesystem."""
    low = data.lower()
    if b"fsfreeze-freeze\"" in low or b"fsfreeze-freeze'" in low:
        raise RuntimeError("refusing to send guest-fsfreeze-freeze: %r" % data)
    if b"\\u" in low and b"fsfreeze" in low:
        raise RuntimeError("refusing escapes near fsfreeze: %r" % data)
    if b"freeze-list" in low and data not in SAFE_LISTS and \
            data != FREEZE_NONE:
        raise RuntimeError("refusing unvetted freeze-list: %r" % data)
    if to_qga and (data == FREEZE_NONE or b"fsfreeze-thaw" in low):
        raise RuntimeError("refusing to send this to qemu-ga: %r" % data)


# freeze-list requests whose arguments fail QAPI type checking before the
# command runs (protocol.md 2.3): safe on both agents.
FL = b'{"execute":"guest-fsfreeze-freeze-list","arguments":%s}\n'
SAFE_LISTS = [FL % a for a in (
    b'{"mountpoints":"/x"}', b'{"mountpoints":null}', b'{"mountpoints":1}',
    b'{"mountpoints":{}}', b'{"mountpoints":[1]}',
    b'{"mountpoints":["/nonexistent-t8020",1]}',
    b'{"mountpoints":["/nonexistent-t8020"],"x":1}',
    b'{"mountpoints":"/x","id":1}')]
FREEZE_NONE = FL % b'{"mountpoints":[]}'


# ------------------------------------------------------------ values -----
class NotJSON(Exception):
    pass


def _no_constants(name):
    raise NotJSON(name)


def _typed(v):
    """A strictly typed, order-keeping form: 1 != 1.0 != true, -0.0 != 0."""
    if isinstance(v, tuple):
        return ("{}", tuple((k, _typed(x)) for k, x in v[1]))
    if isinstance(v, list):
        return ("[]", tuple(_typed(x) for x in v))
    if isinstance(v, bool):
        return ("bool", v)
    if v is None:
        return ("null",)
    if isinstance(v, int):
        return ("int", v)
    if isinstance(v, float):
        return ("float", repr(v))
    return ("str", v)


def canon(line):
    """(delimited, typed value) of one raw reply line; 'not-json' if bad."""
    delim = line.startswith(b"\xff")
    body = line[1:] if delim else line
    try:
        v = json.loads(body.decode("ascii"), parse_constant=_no_constants,
                       object_pairs_hook=lambda p: ("{}", p))
    except (ValueError, UnicodeDecodeError, NotJSON):
        return ("not-json", line)
    return (delim, _typed(v))


def plain(line):
    """The reply as ordinary Python values (for picking fields)."""
    body = line[1:] if line.startswith(b"\xff") else line
    try:
        return json.loads(body.decode("ascii"), parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError, NotJSON):
        return None


def err_desc(line):
    v = plain(line)
    if isinstance(v, dict) and isinstance(v.get("error"), dict):
        return v["error"].get("desc")
    return None


def qemu_dumps(v):
    """Serialise like QEMU's JSON writer (ASCII input only)."""
    return json.dumps(v, separators=(", ", ": ")).encode()


# ------------------------------------------------------------- peers -----
class Peer:
    """One agent under test; subclasses know how to start it."""

    name = "?"

    def __init__(self):
        self.sock = None
        self.restarts = 0

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(self.sock)
        return s

    def exchange(self, writes, fence_id, pause, timeout):
        """Write the case, then the fence; (lines before it, fence seen)."""
        assert_safe(b"".join(writes), isinstance(self, QGA))
        s = self.connect()
        try:
            return exchange(s, writes, fence_id, pause, timeout)
        finally:
            s.close()


def exchange(s, writes, fence_id, pause, timeout):
    for i, w in enumerate(writes):
        s.sendall(w)
        if pause and i + 1 < len(writes):
            time.sleep(pause)
    # Let the case's bytes be read on their own before the fence follows.
    time.sleep(0.005)
    s.sendall(b'{"execute":"guest-sync","arguments":{"id":%d}}\n'
              % fence_id)
    want = b'{"return": %d}' % fence_id
    buf = b""
    deadline = time.monotonic() + timeout
    while True:
        lines = buf.split(b"\n")
        if want in lines[:-1]:
            i = lines.index(want)
            return lines[:i], True
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            chunk = s.recv(1 << 20)
        except socket.timeout:
            break
        if not chunk:
            break
        buf += chunk
    lines = buf.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines, False


class QGA(Peer):
    """qemu-ga in unix-listen mode with a private state dir."""

    name = "qemu-ga"

    def __init__(self, workdir):
        super().__init__()
        self.dir = os.path.join(workdir, "qga")
        self.proc = None
        self.hangs = 0

    def start(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.sock = os.path.join(self.dir, "qga.sock")
        self.errf = open(os.path.join(self.dir, "stderr"), "ab")
        self.proc = subprocess.Popen(
            [QEMU_GA, "-m", "unix-listen", "-p", self.sock, "-t", self.dir,
             "-l", os.path.join(self.dir, "qga.log"),
             "-f", os.path.join(self.dir, "qga.pid")],
            stdin=subprocess.DEVNULL, stdout=self.errf, stderr=self.errf,
            preexec_fn=die_with_parent)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("qemu-ga exited with %s" %
                                   self.proc.returncode)
            try:
                self.connect().close()
                return
            except OSError:
                time.sleep(0.01)
        raise RuntimeError("qemu-ga did not listen on %s" % self.sock)

    def stop(self):
        """SIGTERM; qemu-ga can deadlock in its handler: SIGKILL after 3 s."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.hangs += 1
                self.proc.kill()
                self.proc.wait()
        self.errf.close()
        self.proc = None

    def restart(self):
        self.restarts += 1
        self.stop()
        self.start()


def die_with_parent():
    """preexec_fn: the agent gets SIGKILL if this test dies (no orphans)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Ours(Peer):
    """The built agent, started like agenttest.Agent does, in our dir."""

    name = "ours"

    def __init__(self, workdir):
        super().__init__()
        self.dir = os.path.join(workdir, "ours")
        os.makedirs(os.path.join(self.dir, "state"))
        self.sock = os.path.join(self.dir, "agent.sock")
        self.conf = os.path.join(self.dir, "agent.conf")
        # Confine any freeze to a path that is not a mount point: even a
        # bug that took [] for "everything" finds nothing to freeze.
        with open(self.conf, "w") as f:
            f.write("[agent]\nstate_dir = %s\n[hooks]\ndir =\n"
                    "[freeze]\ninclude = %s\n" %
                    (os.path.join(self.dir, "state"),
                     os.path.join(self.dir, "no-such-mount")))
        self.proc = None
        self.error = None
        self.dead = False
        self.misses = 0

    def start(self):
        env = dict(os.environ)
        env.setdefault("FSFREEZE_AGENT_LOG_SOCKET",
                       os.path.join(self.dir, "nolog"))
        self.errf = open(os.path.join(self.dir, "agent.stderr"), "ab")
        try:
            self.proc = subprocess.Popen(
                [AGENT, "-m", "unix-listen", "-p", self.sock, "-c",
                 self.conf], stdin=subprocess.DEVNULL, stdout=self.errf,
                stderr=self.errf, env=env, preexec_fn=die_with_parent)
        except OSError as e:
            self.error = str(e)
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                self.connect().close()
                return
            except OSError:
                time.sleep(0.01)
        self.error = "agent did not listen (exit status %s): %s" % (
            self.proc.poll(), self.stderr())

    def stderr(self):
        with open(os.path.join(self.dir, "agent.stderr"), "rb") as f:
            return f.read()[-2000:].decode(errors="replace")

    def alive(self):
        return self.proc is not None and self.error is None and \
            not self.dead and self.proc.poll() is None

    def exchange(self, writes, fence_id, pause, timeout):
        if not self.alive():
            return [], False
        try:
            lines, fenced = super().exchange(writes, fence_id, pause,
                                             timeout)
        except OSError as e:
            lines, fenced = [b"<connection error: %s>" %
                             str(e).encode()], False
        # An agent that misses three fences in a row is taken as hung, so
        # the remaining cases fail at once instead of waiting each.
        self.misses = 0 if fenced else self.misses + 1
        if self.misses >= 3:
            self.dead = True
        return lines, fenced

    def stop(self):
        """SIGTERM; the exit status, or None if it did not exit in 10 s."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.errf.close()


# ------------------------------------------------------------- cases -----
class Case:
    """One byte sequence and how ours must relate to qemu-ga's replies.

    mode: "same" (identical lines), "ff" (D1), "first" (D2), "either"
    (D8), or "fixed": ours must be `ours`, a list of exact lines (bytes)
    and error patterns (see match_pattern). qga, when given, is what protocol.md
    documents for qemu-ga: a list of raw lines, or for "first" the desc of
    its first error; checked so that a changed qemu-ga cannot make the
    comparison meaningless. raw: also compare bytes (well-formed input).
    """

    def __init__(self, name, data, mode="same", split=False, qga=None,
                 ours=None, raw=None, qga_fence=True, pause=0.0):
        if isinstance(data, (bytes, bytearray)):
            data = [bytes(data)]
        self.name = name
        self.writes = data
        self.mode = mode
        if split:
            self.writes = [bytes([c]) for c in b"".join(data)]
            pause = pause or 0.002
        self.pause = pause if len(self.writes) > 1 else 0.0
        if len(data) > 1 and not split:
            self.pause = pause or 0.05
        self.qga = qga
        self.ours = ours
        self.raw = (mode in ("same", "ff", "fixed")) if raw is None else raw
        self.qga_fence = qga_fence


def ping(id_text):
    return b'{"execute":"guest-ping","id":' + id_text + b'}\n'


def ok_ping(id_text):
    return b'{"return": {}, "id": ' + id_text + b'}'


def qstr(s):
    """A string as QEMU's JSON writer writes it (protocol.md 1.2)."""
    out = ['"']
    for ch in s:
        c = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\b\f\n\r\t":
            out.append(json.dumps(ch)[1:-1])
        elif c < 0x20 or 0x7f <= c <= 0xffff:
            out.append("\\u%04X" % c)
        elif c > 0xffff:
            c -= 0x10000
            out.append("\\u%04X\\u%04X" % (0xd800 + (c >> 10),
                                           0xdc00 + (c & 0x3ff)))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out).encode()


def err(desc, klass="GenericError", id_text=None):
    """An error line; desc is the value (not its wire form)."""
    e = b'"error": {"class": "%s", "desc": %s}' % (klass.encode(), qstr(desc))
    if id_text is None:
        return b"{" + e + b"}"
    return b'{"id": ' + id_text + b", " + e + b"}"


SYNC = b'{"execute":"guest-sync","arguments":{"id":%s}}\n'
SYNCD = b'{"execute":"guest-sync-delimited","arguments":{"id":%s}}\n'
NOTOBJ = "QMP input must be a JSON object"
BADID = "Invalid parameter type for 'id', expected: integer"
STRAY = "JSON parse error, stray '\ufffd'"
DEPTH = "JSON nesting depth limit exceeded"
UTF8 = "JSON parse error, invalid UTF-8 sequence in string"


def cases():
    c = []
    add = c.append
    # guest-sync / guest-sync-delimited
    add(Case("libvirt guest-sync, exact bytes",
             b'{"execute":"guest-sync", "arguments":{"id":1795390000123}}\n',
             qga=[b'{"return": 1795390000123}']))
    for v in (b"9223372036854775807", b"-9223372036854775808", b"0", b"-1"):
        add(Case("guest-sync id " + v.decode(), SYNC % v,
                 qga=[b'{"return": ' + v + b"}"]))
    add(Case("guest-sync with a request id",
             b'{"execute":"guest-sync","arguments":{"id":7},"id":"s"}\n'))
    add(Case("guest-sync-delimited: 0xFF before the reply", SYNCD % b"123",
             qga=[b'\xff{"return": 123}']))
    add(Case("guest-sync-delimited with a request id",
             b'{"execute":"guest-sync-delimited","arguments":{"id":5},'
             b'"id":"x"}\n', qga=[b'\xff{"return": 5, "id": "x"}']))
    add(Case("Proxmox pipelined pair in one write",
             b'{"arguments":{"id":4242011},"execute":"guest-sync-delimited"}'
             b'\n{"arguments":{},"execute":"guest-fsfreeze-status"}\n',
             qga=[b'\xff{"return": 4242011}', b'{"return": "thawed"}']))
    add(Case("QEMU /qga/sync-delimited: 0xFF then sync-delimited (D1)",
             b"\xff" + SYNCD % b"2737718935", mode="ff",
             qga=[err(STRAY), b'\xff{"return": 2737718935}']))
    add(Case("0xFF then guest-sync (D1)", b"\xff" + SYNC % b"9", mode="ff",
             qga=[err(STRAY), b'{"return": 9}']))
    add(Case("0xFF cuts a half request (D1)",
             [b'{"execute":"guest-pi', b"\xff" + SYNCD % b"10"], mode="ff",
             qga=[err("JSON parse error, stray '\"guest-pi\ufffd'"),
                  b'\xff{"return": 10}']))
    add(Case("0xFF ends an unclosed object (D1)",
             [b'{"execute":"guest-ping"', b"\xff"], mode="ff",
             qga=[err(STRAY)]))
    add(Case("three 0xFF bytes (D1)", b"\xff\xff\xff", mode="ff",
             qga=[err(STRAY)] * 3))
    add(Case("0xFE byte (D1)", b"\xfe\n", mode="ff", qga=[err(STRAY)]))
    # guest-ping ids of every JSON type
    ids = [
        (b'"caf\xc3\xa9"', b'"caf\\u00E9"'),
        (b'"\xf0\x9f\x98\x80"', b'"\\uD83D\\uDE00"'),
        (b'"a\\"b\\\\c\\/d\\n\\t"', b'"a\\"b\\\\c/d\\n\\t"'),
        (b'"a\\u0000b"', b'"a\\u0000b"'),
        (b'"\\u00e9"', b'"\\u00E9"'),
        (b'"\\ud83d\\ude00"', b'"\\uD83D\\uDE00"'),
        (b'"\\u0001\\u001f\\u007f\\u0080\\b\\f\\r/"',
         b'"\\u0001\\u001F\\u007F\\u0080\\b\\f\\r/"'),
        (b'"\x7f\xc2\x80\xef\xbf\xbd\xf0\x90\x80\x80\xf4\x8f\xbf\xbd"',
         b'"\\u007F\\u0080\\uFFFD\\uD800\\uDC00\\uDBFF\\uDFFD"'),
        (b'""', b'""'),
        (b'"probe"', b'"probe"'),
        (b"0", b"0"), (b"1", b"1"), (b"-1", b"-1"), (b"42", b"42"),
        (b"9223372036854775807", b"9223372036854775807"),
        (b"-9223372036854775808", b"-9223372036854775808"),
        (b"9223372036854775808", b"9223372036854775808"),
        (b"18446744073709551615", b"18446744073709551615"),
        (b"18446744073709551616", b"1.8446744073709552e+19"),
        (b"-9223372036854775809", b"-9.2233720368547758e+18"),
        (b"1.0", b"1"), (b"-0", b"0"), (b"-0.0", b"-0"), (b"1.5", b"1.5"),
        (b"0.1", b"0.10000000000000001"), (b"1e3", b"1000"),
        (b"1E+2", b"100"), (b"-1.5e-7", b"-1.4999999999999999e-07"),
        (b"1e-400", b"0"),
        (b"null", b"null"), (b"true", b"true"), (b"false", b"false"),
        (b"[]", b"[]"), (b"{}", b"{}"),
        (b'[1,"a",null,true,[2.5]]', b'[1, "a", null, true, [2.5]]'),
        (b'{"a":{"b":[1,2]}}', b'{"a": {"b": [1, 2]}}'),
        # qemu-ga prints members in its hash-bucket order (protocol.md 1.2)
        (b'{"z":1,"a":2,"id":3,"execute":4,"return":5,"error":6}',
         b'{"a": 2, "execute": 4, "z": 1, "return": 5, "id": 3, '
         b'"error": 6}'),
        # same bucket (147): the member inserted last comes first
        (b'{"aax":1,"aay":2,"aaz":3,"a":4}',
         b'{"aaz": 3, "aay": 2, "aax": 1, "a": 4}'),
        (b'{"x":{"b":1,"a":2},"arguments":[{"y":0,"x":1}]}',
         b'{"x": {"a": 2, "b": 1}, "arguments": [{"x": 1, "y": 0}]}'),
        (b"[" * 20 + b"1" + b"]" * 20, b"[" * 20 + b"1" + b"]" * 20),
        (b'"' + b"x" * 4000 + b'"', b'"' + b"x" * 4000 + b'"'),
    ]
    for req, rep in ids:
        label = req if len(req) < 40 else req[:30] + b"..."
        add(Case("guest-ping id " + label.decode("ascii", "backslashreplace"),
                 ping(req), qga=[ok_ping(rep)]))
    # Not in protocol.md, seen on the wire: QEMU's parser rejects Unicode
    # noncharacters, raw or escaped, as a single error; ours must too.
    for raw, desc in (
            (b'"\xef\xbf\xbf"', UTF8),
            (b'"\xef\xb7\x90"', UTF8),
            (b'"\xf4\x8f\xbf\xbf"', UTF8),
            (b'"\\uffff"', "JSON parse error, \\uffff is not a valid Unicode "
             "character"),
            (b'"\\udbff\\udfff"', "JSON parse error, \\udbff\\udfff is not a "
             "valid Unicode character")):
        add(Case("noncharacter id " + raw.decode("ascii", "backslashreplace"),
                 ping(raw), qga=[err(desc)]))
    # QEMU reads modified UTF-8: C0 80 is U+0000. Rejecting it is fine too.
    add(Case("overlong NUL C0 80 (D8)", ping(b'"\xc0\x80"'), mode="either",
             qga=[ok_ping(b'"\\u0000"')]))
    add(Case("guest-ping, no id", b'{"execute":"guest-ping"}\n',
             qga=[b'{"return": {}}']))
    add(Case("guest-ping, whitespace everywhere",
             b'\n\n  {\r\n "execute" :\t"guest-ping"\n}\n\n',
             qga=[b'{"return": {}}']))
    add(Case("guest-ping, arguments {}",
             b'{"execute":"guest-ping","arguments":{}}\n'))
    add(Case("escaped command name",
             b'{"execute":"guest-\\u0070ing","id":"\\u00e9"}\n',
             qga=[ok_ping(b'"\\u00E9"')]))
    add(Case("guest-fsfreeze-status -> thawed",
             b'{"execute":"guest-fsfreeze-status"}\n',
             qga=[b'{"return": "thawed"}']))
    add(Case("guest-fsfreeze-status, arguments {} and id",
             b'{"execute":"guest-fsfreeze-status","arguments":{},"id":1}\n',
             qga=[b'{"return": "thawed", "id": 1}']))
    # framing
    add(Case("packed: two requests in one write",
             ping(b"1")[:-1] + ping(b"2"),
             qga=[ok_ping(b"1"), ok_ping(b"2")]))
    add(Case("packed: five mixed requests in one write",
             SYNCD % b"1" + ping(b'"p"') +
             b'{"execute":"guest-fsfreeze-status"}' + SYNC % b"2" +
             b'{"execute":"guest-nope","id":[]}\n'))
    add(Case("split: one byte per write", ping(b'"split"'), split=True,
             qga=[ok_ping(b'"split"')]))
    add(Case("split: sync-delimited one byte per write", SYNCD % b"31",
             split=True))
    add(Case("split: two writes inside a name",
             [b'{"execute":"gue', b'st-ping","id":"split"}\n'],
             qga=[ok_ping(b'"split"')]))
    add(Case("split: pair cut inside an escape",
             [b'{"execute":"guest-ping","id":"\\u00', b'e9"}\n' +
              ping(b"2")], qga=[ok_ping(b'"\\u00E9"'), ok_ping(b"2")]))
    add(Case("bare number ends at the next request",
             [b"42", ping(b'"probe"')],
             qga=[err(NOTOBJ), ok_ping(b'"probe"')]))
    # errors of well-formed requests (protocol.md 2.2)
    E = [
        ('unknown command', b'{"execute":"guest-nope","id":42}',
         err("The command guest-nope has not been found", "CommandNotFound",
             b"42")),
        ('unknown command, no id', b'{"execute":"guest-nope"}',
         err("The command guest-nope has not been found",
             "CommandNotFound")),
        ('unknown command, arguments not examined',
         b'{"execute":"guest-nope","arguments":{"x":1}}', None),
        ('name not exact (leading space)', b'{"execute":" guest-ping"}',
         err("The command  guest-ping has not been found",
             "CommandNotFound")),
        ('name not exact (case)', b'{"execute":"Guest-Ping"}', None),
        ('name not exact (trailing NUL)', b'{"execute":"guest-ping\\u0000"}',
         None),
        ('not an object: string', b'"hello"', err(NOTOBJ)),
        ('not an object: number', b'42 ', err(NOTOBJ)),
        ('not an object: true', b'true ', err(NOTOBJ)),
        ('not an object: null', b'null ', err(NOTOBJ)),
        ('not an object: array', b'[1,2]', err(NOTOBJ)),
        ('not an object: []', b'[]', err(NOTOBJ)),
        ('not an object: array of a request',
         b'[{"execute":"guest-ping"}]', err(NOTOBJ)),
        ('no execute: {}', b'{}', err("QMP input lacks member 'execute'")),
        ('no execute, id echoed', b'{"id":1}',
         err("QMP input lacks member 'execute'", id_text=b"1")),
        ('no execute, arguments', b'{"arguments":{}}', None),
        ('execute not a string: 1', b'{"execute":1}',
         err("QMP input member 'execute' must be a string")),
        ('execute not a string: null', b'{"execute":null,"id":3}',
         err("QMP input member 'execute' must be a string", id_text=b"3")),
        ('execute not a string: array', b'{"execute":["guest-ping"]}', None),
        ('execute not a string: object', b'{"execute":{}}', None),
        ('arguments not an object: []',
         b'{"execute":"guest-ping","arguments":[]}',
         err("QMP input member 'arguments' must be an object")),
        ('arguments not an object: null',
         b'{"execute":"guest-ping","arguments":null}', None),
        ('arguments not an object: string',
         b'{"execute":"guest-ping","arguments":"x","id":"i"}', None),
        ('arguments not an object, unknown command',
         b'{"execute":"guest-nope","arguments":[]}', None),
        ('bad execute and bad arguments',
         b'{"execute":1,"arguments":[]}', None),
        ('extra member', b'{"execute":"guest-ping","foo":1}',
         err("QMP input member 'foo' is unexpected")),
        ('extra member with id', b'{"execute":"guest-ping","foo":1,"id":2}',
         None),
        ('extra member before execute (hash order)',
         b'{"foo":1,"execute":1}', None),
        ('extra member, no execute', b'{"foo":1}', None),
        ('member name case', b'{"Execute":"guest-ping"}',
         err("QMP input member 'Execute' is unexpected")),
        ('exec-oob', b'{"exec-oob":"guest-ping"}',
         err("QMP input member 'exec-oob' is unexpected")),
        ('unknown argument',
         b'{"execute":"guest-ping","arguments":{"foo":42}}',
         err("Parameter 'foo' is unexpected")),
        ('unknown argument of status',
         b'{"execute":"guest-fsfreeze-status","arguments":{"x":1}}', None),
        ('unknown argument of info',
         b'{"execute":"guest-info","arguments":{"x":1},"id":"i"}', None),
        ('unknown argument next to id',
         b'{"execute":"guest-sync","arguments":{"id":1,"x":2}}', None),
        ('two unknown arguments',
         b'{"execute":"guest-ping","arguments":{"foo":42,"bar":1}}',
         err("Parameter 'bar' is unexpected")),
        ('two unknown arguments, other order',
         b'{"execute":"guest-ping","arguments":{"bar":42,"foo":1}}',
         err("Parameter 'bar' is unexpected")),
        ('missing argument', b'{"execute":"guest-sync"}',
         err("Parameter 'id' is missing")),
        ('missing argument, arguments {}',
         b'{"execute":"guest-sync","arguments":{},"id":9}',
         err("Parameter 'id' is missing", id_text=b"9")),
        ('missing argument next to an unknown one',
         b'{"execute":"guest-sync","arguments":{"x":1}}',
         err("Parameter 'id' is missing")),
        ('sync-delimited missing argument: no 0xFF',
         b'{"execute":"guest-sync-delimited"}',
         err("Parameter 'id' is missing")),
    ]
    for v in (b'"x"', b"1.5", b"1.0", b"1e3", b"true", b"null", b"[]", b"{}",
              b"9223372036854775808", b"18446744073709551615",
              b"18446744073709551616", b"-9223372036854775809"):
        E.append(("guest-sync id " + v.decode() + ": wrong type",
                  SYNC[:-1] % v, err(BADID)))
    E.append(("sync-delimited wrong type: no 0xFF",
              SYNCD[:-1] % b'"x"', err(BADID)))
    for a in SAFE_LISTS:
        E.append(("freeze-list " + a[a.index(b'"arguments"'):-2].decode(),
                  a[:-1], None))
    E += [
        ('duplicate key', b'{"execute":"guest-ping","id":1,"id":2}',
         err("JSON parse error, duplicate key")),
        ('duplicate execute',
         b'{"execute":"guest-ping","execute":"guest-info"}',
         err("JSON parse error, duplicate key")),
        ('duplicate key inside the id',
         b'{"execute":"guest-ping","id":{"a":1,"a":2}}',
         err("JSON parse error, duplicate key")),
        ('duplicate key inside arguments',
         b'{"execute":"guest-sync","arguments":{"id":1,"id":1}}',
         err("JSON parse error, duplicate key")),
        ('same key in sibling objects is fine',
         b'{"execute":"guest-ping","id":[{"a":1},{"a":2}]}', None),
    ]
    for name, req, rep in E:
        add(Case(name, req + b"\n", qga=None if rep is None else [rep]))
    # JSON syntax families (protocol.md 2.4): ours sends exactly one error
    S = [
        ('bad byte in a value', SYNC % b"TRUE", "JSON parse error, stray 'T'"),
        ('plus sign', SYNC % b"+1", "JSON parse error, stray '+'"),
        ('leading zero', SYNC % b"01", "JSON parse error, stray '01'"),
        ('hex number', SYNC % b"0x10",
         "JSON parse error, expected separator in dict"),
        ('uppercase garbage', b"HELLO\n", "JSON parse error, stray 'H'"),
        ('control char in a string', b'{"execute":"guest-p\x01ing"}\n',
         "JSON parse error, stray '\"guest-p\x01'"),
        ('raw NUL', b"\x00\n", "JSON parse error, stray ''"),
        ('raw NUL in a string', ping(b'"a\x00b"'),
         "JSON parse error, stray '\"a'"),
        ('unknown word', b"foo \n", "JSON parse error, invalid keyword 'foo'"),
        ('truncated keyword', ping(b"nul"),
         "JSON parse error, invalid keyword 'nul'"),
        ('two unknown words', b"hello world\n",
         "JSON parse error, invalid keyword 'hello'"),
        ('value missing: }', b"}\n", "JSON parse error, expecting value"),
        ('value missing: ]', b"]\n", "JSON parse error, expecting value"),
        ('value missing: :', b":\n", "JSON parse error, expecting value"),
        ('value missing: ,', b",\n", "JSON parse error, expecting value"),
        ('value missing after colon', b'{"execute":}\n',
         "JSON parse error, expecting value"),
        ('trailing comma', b'{"execute":"guest-ping",}\n',
         "JSON parse error, expecting value"),
        ('no colon', b'{"execute" "guest-ping"}\n',
         "JSON parse error, missing : in object pair"),
        ('bad separator', b'{"execute":"guest-ping"]\n',
         "JSON parse error, expected separator in dict"),
        ('bad separator in an array', b"[1 2]\n",
         "JSON parse error, expected separator in list"),
        ('non-string key', b"{1:2}\n",
         "JSON parse error, key is not a string in object"),
        ('bad escape', b'{"execute":"guest-\\qping"}\n',
         "JSON parse error, invalid escape sequence in string"),
        ('bad UTF-8: lone continuation byte', ping(b'"\x80"'),
         "JSON parse error, invalid UTF-8 sequence in string"),
        ('bad UTF-8: truncated sequence', ping(b'"\xc3("'),
         "JSON parse error, invalid UTF-8 sequence in string"),
        ('bad UTF-8: overlong', ping(b'"\xc0\xaf"'),
         "JSON parse error, invalid UTF-8 sequence in string"),
        ('bad UTF-8: encoded surrogate', ping(b'"\xed\xa0\xbd"'),
         "JSON parse error, invalid UTF-8 sequence in string"),
        ('bad UTF-8: above U+10FFFF', ping(b'"\xf4\x90\x80\x80"'),
         "JSON parse error, invalid UTF-8 sequence in string"),
        ('lone high surrogate', ping(b'"\\ud83d"'),
         "JSON parse error, \\ud83d is not a valid Unicode character"),
        ('lone low surrogate', ping(b'"\\ude00"'),
         "JSON parse error, \\ude00 is not a valid Unicode character"),
        ('nesting limit: 1025-deep id (D7)',
         ping(b"[" * 1025 + b"]" * 1025), DEPTH),
    ]
    for name, data, desc in S:
        add(Case("syntax: " + name, data, mode="first",
                 qga=None if desc is None else desc))
    # intended differences with fixed expectations
    add(Case("1e400 id echoed as its token (D4)", ping(b"1e400"),
             mode="fixed", qga=[b'{"return": {}, "id": inf}'],
             ours=[ok_ping(b"1e400")]))
    add(Case("-1e400 id echoed as its token (D4)", ping(b"-1e400"),
             mode="fixed", qga=[b'{"return": {}, "id": -inf}'],
             ours=[ok_ping(b"-1e400")]))
    add(Case("unclosed object cut at the next request (D6)",
             [b'{"execute":"guest-ping"\n', ping(b'"probe"')], mode="fixed",
             qga=[], qga_fence=False,
             ours=["JSON parse error, ", ok_ping(b'"probe"')]))
    # Hosts frame requests by LF, so a raw LF inside a string ends the line:
    # two malformed lines, one error each (qemu-ga's first desc kept).
    add(Case("raw LF in a string: one error per line (D2)", ping(b'"a\nb"'),
             mode="fixed", qga_fence=True,
             ours=[err("JSON parse error, stray '\"a\n'"),
                   "JSON parse error, "]))
    add(Case("40-deep id over our depth limit (D7)",
             ping(b"[" * 40 + b"]" * 40), mode="fixed",
             qga=[ok_ping(b"[" * 40 + b"]" * 40)], ours=[err(DEPTH)]))
    big = b'"' + b"y" * (100 * 1024) + b'"'
    add(Case("100 KiB request over our size limit (D7)", ping(big),
             mode="fixed", qga=[ok_ping(big)],
             ours=[("JSON ", " limit exceeded")]))
    add(Case("a qemu-ga command we do not implement",
             b'{"execute":"guest-get-time","id":1}\n', mode="fixed",
             ours=[err("The command guest-get-time has not been found",
                       "CommandNotFound", b"1")]))
    add(Case("single-quoted strings (D8)",
             b"{'execute':'guest-ping','id':'sq'}\n", mode="either",
             qga=[ok_ping(b'"sq"')]))
    return c


# --------------------------------------------------------- comparing -----
def show(lines, limit=6):
    out = [repr(x) for x in lines[:limit]]
    if len(lines) > limit:
        out.append("... %d lines in all" % len(lines))
    return "\n".join(out) or "(nothing)"


def drop_ff(lines):
    """qemu-ga's replies minus the errors its 0xFF handling made (D1)."""
    out = []
    for x in lines:
        d = err_desc(x)
        if d is not None and d.startswith("JSON parse error, stray '") and \
                d.endswith("\ufffd'"):
            continue
        out.append(x)
    return out


def match_pattern(line, pat):
    """A pattern in `ours`: a GenericError without id whose desc starts
    with pat (a str), or starts and ends with pat's two strs (a tuple)."""
    v = plain(line)
    if not (isinstance(v, dict) and set(v) == {"error"} and
            isinstance(v["error"], dict) and
            v["error"].get("class") == "GenericError" and
            isinstance(v["error"].get("desc"), str)):
        return False
    d = v["error"]["desc"]
    if isinstance(pat, tuple):
        return d.startswith(pat[0]) and d.endswith(pat[1])
    return d.startswith(pat)


def compare(t, case, q, q_fence, o, o_fence):
    n = case.name
    bad = [x for x in o if canon(x)[0] == "not-json"]
    if not t.ok(not bad, n + ": every line of ours is JSON"):
        t.diag(show(bad))
    t.ok(o_fence, n + ": ours answers the request after it (resync)")
    # qemu-ga as documented: the comparison means something
    if case.qga is not None:
        if case.mode == "first":
            t.eq(err_desc(q[0]) if q else None, case.qga,
                 n + ": qemu-ga's first reply as documented")
        else:
            t.eq(q, case.qga, n + ": qemu-ga's replies as documented")
    if case.qga_fence:
        t.ok(q_fence, n + ": qemu-ga answers the request after it")

    if case.mode == "same":
        want = q
    elif case.mode == "ff":
        want = drop_ff(q)
    elif case.mode == "first":
        if not t.ok(len(o) == 1 and o[0] == (q[0] if q else None),
                    n + ": ours sends exactly qemu-ga's first error"):
            t.diag("qemu-ga:\n" + show(q) + "\nours:\n" + show(o))
        return
    elif case.mode == "either":
        good = [canon(x) for x in o] == [canon(x) for x in q] or (
            len(o) == 1 and match_pattern(o[0], "JSON parse error, "))
        if not t.ok(good, n + ": accepted like qemu-ga or one error"):
            t.diag("ours:\n" + show(o))
        return
    else:
        want = case.ours
        if not all(isinstance(w, bytes) for w in want):
            good = len(o) == len(want) and all(
                x == w if isinstance(w, bytes) else match_pattern(x, w)
                for x, w in zip(o, want))
            if not t.ok(good, n + ": ours as intended"):
                t.diag("wanted:\n" + show(want) + "\nours:\n" + show(o))
            return
    same = [canon(x) for x in o] == [canon(x) for x in want]
    if not t.ok(same, n + ": same JSON values"):
        t.diag("want:\n" + show(want) + "\nours:\n" + show(o))
    if case.raw:
        if not t.ok(o == want, n + ": byte-identical"):
            t.diag("want:\n" + show(want) + "\nours:\n" + show(o))


def run_case(t, qga, ours, case, k):
    fence = FENCE_BASE + 2 * k
    q, qf = qga.exchange(case.writes, fence, case.pause,
                         1.0 if case.qga_fence else 0.4)
    if not qf:
        qga.restart()
    o, of = ours.exchange(case.writes, fence + 1, case.pause, 2.0)
    compare(t, case, q, qf, o, of)


# ------------------------------------------------------- special cases ---
def info_case(t, qga, ours):
    """D3: guest-info has our 8 commands in qemu-ga's order and layout."""
    req = b'{"execute":"guest-info"}\n'
    q, _ = qga.exchange([req], FENCE_BASE - 1, 0, 2.0)
    o, _ = ours.exchange([req], FENCE_BASE - 2, 0, 2.0)
    names = ["guest-fsfreeze-thaw", "guest-fsfreeze-freeze-list",
             "guest-fsfreeze-freeze", "guest-fsfreeze-status", "guest-info",
             "guest-ping", "guest-sync", "guest-sync-delimited"]
    qv = plain(q[0]) if len(q) == 1 else None
    if not t.ok(qv is not None and qv["return"]["version"].startswith("7.2"),
                "guest-info: qemu-ga answers with its version"):
        return
    qcmds = [e for e in qv["return"]["supported_commands"]
             if e["name"] in names]
    t.eq([e["name"] for e in qcmds], names,
         "guest-info: qemu-ga's order of our 8 commands (protocol.md 3.4)")
    ov = plain(o[0]) if len(o) == 1 else None
    if not t.ok(isinstance(ov, dict) and isinstance(ov.get("return"), dict),
                "guest-info: ours answers (D3)"):
        t.diag(show(o))
        return
    version = ov["return"].get("version")
    t.ok(isinstance(version, str) and version and version != "7.2.22",
         "guest-info: ours reports its own version (%r)" % (version,))
    want_version = package_version()
    if want_version is not None:
        t.eq(version, want_version, "guest-info: version is PACKAGE_VERSION")
    # Downstream extensions (QAPI's "__" prefix) may come first; the rest
    # must be exactly qemu-ga's elements for our 8 commands.
    ocmds = ov["return"].get("supported_commands") or []
    ext = [e for e in ocmds if isinstance(e, dict) and
           str(e.get("name")).startswith("__")]
    t.ok(all(list(e) == ["enabled", "name", "success-response"]
             for e in ext), "guest-info: extension elements in qemu-ga's "
         "layout (%d)" % len(ext))
    want = qemu_dumps({"return": {"version": version,
                                  "supported_commands": ext + qcmds}})
    if not t.ok(o[0] == want, "guest-info: byte layout of qemu-ga's, "
                "our 8 commands (D3)"):
        t.diag("want: %r\nours: %r" % (want, o[0]))
    # and with an id, the id last as in every success reply
    o, _ = ours.exchange([b'{"execute":"guest-info","id":"i"}\n'],
                         FENCE_BASE - 3, 0, 2.0)
    want = want[:-1] + b', "id": "i"}'
    t.ok(o == [want], "guest-info with an id: id after return")


def burst_case(t, qga, ours):
    """300 pipelined guest-info requests in one write (~220 KB of replies
    for ours, 1 MB for qemu-ga): every one answered, in order, whatever
    the output queue's marks and the reads' sizes."""
    n = 300
    req = b'{"execute":"guest-info","id":%d}\n'
    data = b"".join(req % i for i in range(n))
    for p in (qga, ours):
        if isinstance(p, Ours) and not p.alive():
            t.ok(False, "burst: ours is not running")
            continue
        # No fence here: a later write must not be what wakes the agent.
        s = p.connect()
        s.sendall(data)
        buf = b""
        deadline = time.monotonic() + 5
        try:
            while buf.count(b"\n") < n and time.monotonic() < deadline:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                buf += chunk
        except socket.timeout:
            pass
        s.close()
        lines = buf.split(b"\n")[:-1]
        ids = [(plain(x) or {}).get("id") for x in lines]
        if not t.ok(ids == list(range(n)),
                    "burst of %d guest-info: %s answers all, in order" %
                    (n, p.name)):
            t.diag("%d replies" % len(lines))


def package_version():
    bd = os.environ.get("top_builddir")
    if not bd:
        return None
    try:
        with open(os.path.join(bd, "config.h")) as f:
            m = re.search(r'#define PACKAGE_VERSION "([^"]*)"', f.read())
    except OSError:
        return None
    return m.group(1) if m else None


def conn_case(t, qga, ours):
    """D5: a half request left by one client never reaches the next one."""
    left = b'{"execute":"guest-ping","id":"left-behind"'
    nxt = ping(b'"new-conn"')
    res = {}
    for p, base in ((qga, FENCE_BASE - 10), (ours, FENCE_BASE - 20)):
        if isinstance(p, Ours) and not p.alive():
            res[p.name] = ([], False)
            continue
        s = p.connect()
        s.sendall(left)
        time.sleep(0.05)
        s.close()
        time.sleep(0.05)
        res[p.name] = p.exchange([nxt], base, 0, 0.5 if p is qga else 2.0)
    q, qf = res["qemu-ga"]
    t.ok(q == [] and not qf,
         "new connection: qemu-ga's next client is eaten (protocol.md 1.5)")
    qga.restart()
    o, of = res["ours"]
    if not t.ok(o == [ok_ping(b'"new-conn"')] and of,
                "new connection: ours answers the next client (D5)"):
        t.diag(show(o))


def ours_only(t, ours):
    """Commands not sent to qemu-ga: thaw, and freeze-list []."""
    for name, req, want in (
            ("thaw with nothing frozen -> 0",
             b'{"execute":"guest-fsfreeze-thaw"}\n', [b'{"return": 0}']),
            ("freeze-list [] -> 0, nothing frozen", FREEZE_NONE,
             [b'{"return": 0}']),
            ("status after freeze-list [] -> thawed",
             b'{"execute":"guest-fsfreeze-status"}\n',
             [b'{"return": "thawed"}']),
            ("thaw with an id", b'{"execute":"guest-fsfreeze-thaw","id":1}\n',
             [b'{"return": 0, "id": 1}']),
            ("thaw with an unknown argument",
             b'{"execute":"guest-fsfreeze-thaw","arguments":{"x":1}}\n',
             [err("Parameter 'x' is unexpected")])):
        assert_safe(req, False)
        o, _ = ours.exchange([req], FENCE_BASE - 30, 0, 5.0)
        if not t.ok(o == want, "ours only: " + name):
            t.diag(show(o))


# -------------------------------------------------------------- main -----
def qga_version():
    try:
        r = subprocess.run([QEMU_GA, "-V"], capture_output=True, text=True,
                           timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"QEMU Guest Agent (\d+\.\d+\.\d+)", r.stdout + r.stderr)
    return m.group(1) if m else None


def main():
    if not os.access(QEMU_GA, os.X_OK):
        TAP.skip_all("%s not installed (Debian: qemu-guest-agent)" % QEMU_GA)
    v = qga_version()
    if v is None or not v.startswith("7.2."):
        TAP.skip_all("%s is version %s, the reference is 7.2" % (QEMU_GA, v))
    t = TAP()
    work = tempfile.mkdtemp(prefix="t8020-")
    t.cleanup(lambda: shutil.rmtree(work, ignore_errors=True))
    qga = QGA(work)
    t.cleanup(qga.stop)
    try:
        qga.start()
    except (RuntimeError, OSError) as e:
        t.bail("cannot start qemu-ga: %s" % e)
    t.diag("qemu-ga %s, agent %s" % (v, AGENT))
    ours = Ours(work)
    ours.start()
    t.cleanup(ours.cleanup)
    if not t.ok(ours.alive(), "our agent starts in unix-listen mode"):
        t.diag(ours.error or "")
    # Killed by the harness: still stop both agents and remove the dir.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda n, _: t.bail("killed by signal %d" % n))
    try:
        for k, case in enumerate(cases()):
            run_case(t, qga, ours, case, k)
        info_case(t, qga, ours)
        burst_case(t, qga, ours)
        conn_case(t, qga, ours)
        ours_only(t, ours)
    except KeyboardInterrupt:
        t.bail("interrupted")
    except Exception as e:  # stop both agents and remove the dir anyway
        t.bail("%s: %s" % (type(e).__name__, e))
    if not t.ok(ours.alive(), "our agent is still running"):
        t.diag("hung" if ours.dead else ours.stderr())
    rc = ours.stop()
    t.eq(rc, 0, "our agent exits 0 on SIGTERM")
    qga.stop()
    if qga.hangs:
        t.diag("qemu-ga hung on SIGTERM %d time(s) (known, killed)" %
               qga.hangs)
    t.diag("qemu-ga restarted %d time(s) for stuck parsers" % qga.restarts)
    t.done()


if __name__ == "__main__":
    main()
