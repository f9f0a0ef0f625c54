#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""The built binary in unix-listen mode: the protocol as a host sees it."""

import json
import os
import signal
import socket
import time

from agenttest import TAP, Agent

t = TAP()
a = Agent()
t.cleanup(a.cleanup)

# --- the basic commands, with the exact bytes qemu-ga writes
a.send('{"execute":"guest-sync", "arguments":{"id":1795390000123}}\n')
t.eq(a.read_lines(1), [b'{"return": 1795390000123}'], "guest-sync, libvirt's bytes")
a.send('{"execute":"guest-sync-delimited","arguments":{"id":123}}\n')
t.eq(a.read_lines(1), [b'\xff{"return": 123}'], "guest-sync-delimited: 0xFF first")
a.send('{"execute":"guest-sync-delimited","arguments":{"id":5},"id":"x"}\n')
t.eq(a.read_lines(1), [b'\xff{"return": 5, "id": "x"}'], "sync-delimited with id")
a.send('{"execute":"guest-ping","id":"probe"}\n')
t.eq(a.read_lines(1), [b'{"return": {}, "id": "probe"}'], "guest-ping with id")
a.send('{"execute":"guest-fsfreeze-status"}\n')
t.eq(a.read_lines(1), [b'{"return": "thawed"}'], "status thawed")
a.send('{"execute":"guest-fsfreeze-thaw"}\n')
t.eq(a.read_lines(1), [b'{"return": 0}'], "thaw with nothing frozen is 0")

info = a.request({"execute": "guest-info"})
names = [c["name"] for c in info["return"]["supported_commands"]]
t.eq(names[-8:], ["guest-fsfreeze-thaw", "guest-fsfreeze-freeze-list",
                  "guest-fsfreeze-freeze", "guest-fsfreeze-status", "guest-info",
                  "guest-ping", "guest-sync", "guest-sync-delimited"],
     "guest-info lists qemu-ga's order reversed")
t.ok(all(c["enabled"] and c["success-response"]
         for c in info["return"]["supported_commands"]), "all enabled while thawed")
t.ok(any(n.startswith("__") and n.endswith("_report") for n in names),
     "the report command is listed under a downstream-extension name")
t.ok(isinstance(info["return"]["version"], str), "version is a string")

# --- packed and split requests, Proxmox's pipelined pair
a.send('{"execute":"guest-ping","id":1}{"execute":"guest-ping","id":2}\n')
t.eq(a.read_lines(2), [b'{"return": {}, "id": 1}', b'{"return": {}, "id": 2}'],
     "two requests in one write, in order")
req = b'{"execute":"guest-ping","id":"split"}'
for i in range(len(req)):
    a.send(req[i:i + 1])
    time.sleep(0.001)
t.eq(a.read_lines(1), [b'{"return": {}, "id": "split"}'], "one byte per write")
a.send('{"arguments":{"id":4242011},"execute":"guest-sync-delimited"}\n'
       '{"arguments":{},"execute":"guest-fsfreeze-status"}\n')
t.eq(a.read_lines(2), [b'\xff{"return": 4242011}', b'{"return": "thawed"}'],
     "Proxmox's sync-delimited + status in one write")
a.send('\n\n  {\r\n "execute" :\t"guest-ping"\n}\n\n')
t.eq(a.read_lines(1), [b'{"return": {}}'], "whitespace and a multi-line request")

# --- error families (protocol.md 2.2)
def err(req, want_class, want_desc, want_id=None, name=None):
    a.send(req + "\n")
    got = a.replies(1)
    ok = bool(got) and got[0][1].get("error", {}).get("class") == want_class and \
        got[0][1]["error"].get("desc") == want_desc and got[0][1].get("id") == want_id
    t.ok(ok, name or req)
    if not ok:
        t.diag("got %r" % (got,))

err('{"execute":"guest-nope","id":42}', "CommandNotFound",
    "The command guest-nope has not been found", 42)
err('{"execute":" guest-ping"}', "CommandNotFound",
    "The command  guest-ping has not been found")
err('"hello"', "GenericError", "QMP input must be a JSON object")
err('[{"execute":"guest-ping"}]', "GenericError", "QMP input must be a JSON object")
err('{"id":1}', "GenericError", "QMP input lacks member 'execute'", 1)
err('{"execute":1}', "GenericError", "QMP input member 'execute' must be a string")
err('{"execute":null,"id":3}', "GenericError",
    "QMP input member 'execute' must be a string", 3)
err('{"execute":"guest-ping","arguments":[]}', "GenericError",
    "QMP input member 'arguments' must be an object")
err('{"execute":"guest-ping","foo":1}', "GenericError", "QMP input member 'foo' is unexpected")
err('{"exec-oob":"guest-ping"}', "GenericError", "QMP input member 'exec-oob' is unexpected")
err('{"foo":1}', "GenericError", "QMP input member 'foo' is unexpected",
    name="an unknown member is reported before the missing execute")
err('{"execute":"guest-ping","arguments":{"foo":42}}', "GenericError",
    "Parameter 'foo' is unexpected")
err('{"execute":"guest-ping","arguments":{"foo":42,"bar":1}}', "GenericError",
    "Parameter 'bar' is unexpected", name="two unknown arguments: qemu-ga reports 'bar'")
err('{"execute":"guest-sync"}', "GenericError", "Parameter 'id' is missing")
err('{"execute":"guest-sync","arguments":{"x":1}}', "GenericError", "Parameter 'id' is missing")
err('{"execute":"guest-sync","arguments":{"id":"x"}}', "GenericError",
    "Invalid parameter type for 'id', expected: integer")
err('{"execute":"guest-sync","arguments":{"id":9223372036854775808}}', "GenericError",
    "Invalid parameter type for 'id', expected: integer", name="sync id 2^63 is not int64")
err('{"execute":"guest-sync","arguments":{"id":1.5}}', "GenericError",
    "Invalid parameter type for 'id', expected: integer")
err('{"execute":"guest-sync-delimited"}', "GenericError", "Parameter 'id' is missing",
    name="a rejected sync-delimited has no 0xFF")
err('{"execute":"guest-fsfreeze-freeze-list","arguments":{"mountpoints":"/x"}}',
    "GenericError", "Invalid parameter type for 'mountpoints', expected: array")
err('{"execute":"guest-fsfreeze-freeze-list","arguments":{"mountpoints":["/a",1]}}',
    "GenericError", "Invalid parameter type for 'mountpoints[1]', expected: string")
err('{"execute":"guest-fsfreeze-freeze","arguments":{"mountpoints":[]}}',
    "GenericError", "Parameter 'mountpoints' is unexpected")
err('{"execute":"guest-ping","id":1,"id":2}', "GenericError", "JSON parse error, duplicate key")
t.ok(a.request('{"execute":"guest-ping","id":"after"}') == {"return": {}, "id": "after"},
     "still serving after the errors")

# freeze-list [] freezes nothing, runs no hook
t.eq(a.request('{"execute":"guest-fsfreeze-freeze-list","arguments":{"mountpoints":[]}}'),
     {"return": 0}, "freeze-list [] is 0")
t.eq(a.request('{"execute":"guest-fsfreeze-status"}'), {"return": "thawed"}, "and stays thawed")

# --- one error per malformed message, then the next request (protocol.md 6.1)
a.send('{"execute":"guest-sync","arguments":{"id":TRUE}}\n{"execute":"guest-ping","id":"n"}\n')
got = a.replies(2)
t.ok(len(got) == 2 and "error" in got[0][1] and got[1][1] == {"return": {}, "id": "n"},
     "a bad keyword gives one error, then the next request is answered")
a.send('HELLO\n{"execute":"guest-ping","id":"m"}\n')
got = a.replies(2)
t.ok(len(got) == 2 and "error" in got[0][1] and got[1][1] == {"return": {}, "id": "m"},
     "garbage line: one error, then served")

# --- 0xFF: a silent reset
a.send(b'{"execute":"guest-pi\xff{"execute":"guest-sync-delimited","arguments":{"id":10}}\n')
t.eq(a.read_lines(1), [b'\xff{"return": 10}'], "0xFF drops a half request silently")
a.send(b'\xff\xff\xff')
t.ok(a.silent(0.3), "0xFF bytes alone get no reply")

# --- ids of every type come back as qemu-ga writes them
for raw, want in [('"caf\xc3\xa9"', b'"caf\\u00E9"'), ('1.0', b'1'), ('-0', b'0'),
                  ('18446744073709551615', b'18446744073709551615'),
                  ('18446744073709551616', b'1.8446744073709552e+19'),
                  ('null', b'null'), ('true', b'true'), ('[1, {"a": []}]', b'[1, {"a": []}]'),
                  ('1e400', b'1e400')]:
    a.send(('{"execute":"guest-ping","id":%s}\n' % raw).encode('latin-1'))
    line = a.read_lines(1)
    t.eq(line, [b'{"return": {}, "id": ' + want + b'}'], "id %s echoed" % raw)

# --- a new connection starts with a fresh parser (protocol.md 6.2)
a.send('{"execute":"guest-ping","id":"left-behind"')
a.connect()
a.send('{"execute":"guest-ping","id":"new-conn"}\n')
t.eq(a.read_lines(1), [b'{"return": {}, "id": "new-conn"}'],
     "half a request does not reach the next client")

# --- a client that half-closes (socat, nc -N) still gets its replies
s3 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
a.close()
s3.connect(a.sock)
s3.sendall(b'{"execute":"guest-ping","id":1}\n{"execute":"guest-sync","arguments":{"id":2}}\n')
s3.shutdown(socket.SHUT_WR)
s3.settimeout(5)
data = b""
while True:
    c = s3.recv(1000)
    if not c:
        break
    data += c
s3.close()
t.eq(data, b'{"return": {}, "id": 1}\n{"return": 2}\n',
     "half-closed client: both replies, then the agent closes")
a.connect()

# --- one client at a time; the next is served after the first closes
s2 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s2.connect(a.sock)
s2.sendall(b'{"execute":"guest-ping","id":"second"}\n')
s2.settimeout(0.3)
try:
    early = s2.recv(100)
except socket.timeout:
    early = b""
t.eq(early, b"", "a second client waits while the first is connected")
a.close()
s2.settimeout(5)
t.eq(s2.recv(100), b'{"return": {}, "id": "second"}\n', "and is served once the first closes")
s2.close()
a.connect()


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


pid = a.proc.pid
idle = rss_kb(pid)
t.diag("idle RSS %d kB" % idle)
with open("/proc/%d/maps" % pid) as f:
    sanitized = "libasan" in f.read()


def rss_ok(cond, name):
    # ASan's quarantine and shadow memory make RSS say nothing about us.
    if sanitized:
        t.skip(1, "ASan build: RSS says nothing about the agent")
    else:
        t.ok(cond, name)

# --- 100 MiB of garbage, read back as it comes: bounded memory, then served
import threading
got_lines = []


def drain(sock):
    buf = b""
    while True:
        try:
            chunk = sock.recv(1 << 16)
        except OSError:
            break
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        got_lines.extend(lines)
        if lines and lines[-1] == b'{"return": {}, "id": "after-garbage"}':
            break


chunk = (b"x" * 1023 + b"\n") * 1024
a.conn.settimeout(60)
reader = threading.Thread(target=drain, args=(a.conn,))
reader.start()
peak = 0
for i in range(50):
    a.conn.sendall(chunk)
    peak = max(peak, rss_kb(pid))
a.conn.sendall(b'{"execute":"guest-ping","id":"' + b"A" * 100)
for i in range(50):
    a.conn.sendall(b"A" * (1024 * 1024))
    peak = max(peak, rss_kb(pid))
a.send(b'\xff{"execute":"guest-ping","id":"after-garbage"}\n')
reader.join(30)
t.ok(got_lines and got_lines[-1] == b'{"return": {}, "id": "after-garbage"}',
     "served after 100 MiB of garbage")
bad = 0
for l in got_lines:
    try:
        json.loads(l.lstrip(b"\xff"))
    except ValueError:
        bad += 1
t.ok(bad == 0, "every line written was JSON (%d lines, %d bad)" % (len(got_lines), bad))
t.eq(len(got_lines), 51200 + 2, "one error per garbage line, one for the long string, one reply")
rss_ok(peak - idle < 4096, "RSS grew by less than 4 MiB (%d -> peak %d kB)" % (idle, peak))

# --- a host that never reads replies: bounded memory, no CPU spin
a.connect()
a.conn.setblocking(False)
sent = 0
ping = b'{"execute":"guest-ping"}\n' * 4096
deadline = time.monotonic() + 3
while time.monotonic() < deadline and sent < 100 * 1024 * 1024:
    try:
        sent += a.conn.send(ping)
    except BlockingIOError:
        time.sleep(0.05)
t0 = cpu_ticks(pid)
time.sleep(1.0)
spent = cpu_ticks(pid) - t0
t.ok(spent <= 2, "no CPU while the client does not read (%d ticks in 1 s)" % spent)
rss_ok(rss_kb(pid) - idle < 4096, "RSS bounded while replies pile up (%d kB)" % rss_kb(pid))
a.conn.setblocking(True)
a.connect()
t.eq(a.request('{"execute":"guest-ping","id":"next"}'), {"return": {}, "id": "next"},
     "the next client is served")

t.eq(a.stop(), 0, "SIGTERM: exit status 0")
t.done()
