#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""fsfreeze-agent side by side with qemu-ga 7.2, in one run.

Both agents run in unix-listen mode, each instance in its own private
directory, and are measured in alternating order (A B, B A, ...); every
figure is the median over the runs. Printed as a table with the ratio
ours/qemu-ga and PASS/FAIL against the targets; --json keeps the raw
numbers. It is a benchmark: the exit status is 0 unless something broke
(an agent that does not start, a wrong reply).

  rss        VmRSS/VmHWM after start and after 100,000 mixed requests
  idle       context switches (all threads) and CPU time over 10 s idle,
             with no client and with a connected, silent client
  startup    spawn -> socket appears -> connect -> first guest-ping reply
  ping       guest-ping one at a time (20,000) and pipelined (100,000
             written as one stream while the replies are read), plus the
             agent's CPU per request (/proc/PID/stat utime+stime)
  sigterm    1,000 x (start, ping, SIGTERM): hangs (> 5 s, then SIGKILL)
             and non-zero exit statuses
  stall      a client that writes pings and never reads: agent CPU and RSS
             over 3 s once its socket is full
  garbage    100 MiB of garbage (no quote bytes, so no request can ever
             form), then 0xFF and a valid request that must be answered;
             RSS before, peak and after (qemu-ga gets 1 MiB: it answers
             each bad byte, see protocol.md 6.1)

Safety: nothing here sends a freeze command or guest-fsfreeze-thaw.

usage: agentbench.py [--agent PATH] [--qemu-ga PATH] [--quick] [--json FILE]
                     [--only rss,idle,...] [--runs N]
"""

import argparse
import ctypes
import glob
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
now = time.perf_counter

PING = b'{"execute":"guest-ping"}\n'
PONG = b'{"return": {}}'
MIX = [PING, b'{"execute":"guest-sync","arguments":{"id":%d}}\n',
       b'{"execute":"guest-fsfreeze-status"}\n', b'{"execute":"guest-info"}\n']
FORBIDDEN = (b"fsfreeze-freeze", b"fsfreeze-thaw")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def median(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


# ------------------------------------------------------------ /proc ------
def proc_stat_cpu(pid):
    """utime + stime of the whole process, seconds (CLK_TCK resolution)."""
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def counters(pid):
    """Context switches of all threads, stat CPU and schedstat CPU."""
    vol = nonvol = 0
    sched_ns = 0
    tasks = glob.glob("/proc/%d/task/*" % pid)
    for t in tasks:
        try:
            with open(t + "/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        nonvol += int(line.split()[1])
            with open(t + "/schedstat") as f:
                sched_ns += int(f.read().split()[0])
        except OSError:
            pass
    return {"ctxt": vol + nonvol, "cpu_s": proc_stat_cpu(pid),
            "sched_s": sched_ns / 1e9, "threads": len(tasks)}


def delta(a, b):
    return {k: b[k] - a[k] for k in ("ctxt", "cpu_s", "sched_s")}


def memory(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0])
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    out["Pss"] = int(line.split()[1])
    except OSError:
        pass
    return out


# ----------------------------------------------------------- agents ------
class LogSink(threading.Thread):
    """A datagram socket our agent logs to instead of /dev/log."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.lines = 0
        self.stopping = False
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.s.bind(path)
        self.start()

    def run(self):
        while not self.stopping:
            try:
                self.s.recv(65536)
            except OSError:
                return
            self.lines += 1

    def close(self):
        self.stopping = True
        try:
            w = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            w.sendto(b"stop", self.path)
            w.close()
        except OSError:
            pass
        self.join(1)
        self.s.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


class Kind:
    """How to run one agent: 'ours' or 'qemu-ga'."""

    def __init__(self, name, binary):
        self.name = name
        self.binary = binary

    def argv(self, d, sock):
        if self.name == "qemu-ga":
            return [self.binary, "-m", "unix-listen", "-p", sock, "-t", d,
                    "-l", os.path.join(d, "qga.log"),
                    "-f", os.path.join(d, "qga.pid")]
        conf = os.path.join(d, "agent.conf")
        with open(conf, "w") as f:
            f.write("[agent]\nstate_dir = %s\n[hooks]\ndir =\n" %
                    os.path.join(d, "state"))
        os.makedirs(os.path.join(d, "state"), exist_ok=True)
        return [self.binary, "-m", "unix-listen", "-p", sock, "-c", conf]


def die_with_parent():
    """preexec_fn: SIGKILL the agent when the benchmark dies."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Instance:
    """One agent process in a private directory."""

    def __init__(self, kind, root, tag):
        self.kind = kind
        self.dir = os.path.join(root, "%s-%s" % (kind.name, tag))
        self.sock = os.path.join(self.dir, "agent.sock")
        self.proc = None
        self.sink = None
        self.t_socket = self.t_reply = None

    def start(self, timeout=10.0):
        """Spawn, wait for the socket, connect, answer one guest-ping."""
        try:
            return self._start(timeout)
        except BaseException:
            self.stop(0.5)
            raise

    def _start(self, timeout):
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        env = dict(os.environ)
        if self.kind.name == "ours":
            if self.sink is None:
                self.sink = LogSink(self.dir + ".log.sock")
            env["FSFREEZE_AGENT_LOG_SOCKET"] = self.sink.path
        argv = self.kind.argv(self.dir, self.sock)
        self.errf = open(os.path.join(self.dir, "stderr"), "wb")
        t0 = now()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=self.errf, stderr=self.errf,
                                     env=env, preexec_fn=die_with_parent)
        deadline = t0 + timeout
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or now() > deadline:
                raise RuntimeError("%s did not start: %s" % (
                    self.kind.name, self.stderr()))
            time.sleep(0.0001)
        t1 = now()
        c = None
        while c is None:
            try:
                c = Conn(self.sock)
            except (ConnectionRefusedError, FileNotFoundError):
                if now() > deadline:
                    raise
                time.sleep(0.0001)
        rep = c.call(PING)
        t2 = now()
        c.close()
        if rep != PONG:
            raise RuntimeError("%s: bad first reply %r" % (self.kind.name,
                                                           rep))
        self.t_socket, self.t_reply = t1 - t0, t2 - t0
        return self

    @property
    def pid(self):
        return self.proc.pid

    def stderr(self):
        try:
            with open(os.path.join(self.dir, "stderr"), "rb") as f:
                return f.read()[-2000:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout=5.0):
        """SIGTERM; returns (exit status or None, hung)."""
        if self.proc is None:
            return None, False
        hung = False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                hung = True
                self.proc.kill()
                self.proc.wait()
        self.errf.close()
        rc = self.proc.returncode
        self.proc = None
        return rc, hung

    def close(self):
        self.stop()
        if self.sink is not None:
            self.sink.close()
            self.sink = None


class Conn:
    def __init__(self, path, timeout=30.0):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""

    def send(self, data):
        for bad in FORBIDDEN:
            if bad in data:
                raise RuntimeError("refusing to send %r" % bad)
        self.s.sendall(data)

    def read_line(self):
        while b"\n" not in self.buf:
            chunk = self.s.recv(1 << 16)
            if not chunk:
                raise EOFError("agent closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def call(self, req):
        self.send(req)
        return self.read_line()

    def close(self):
        self.s.close()


def stream(conn, data, nreplies, check=None, chunk=1 << 16):
    """Write data from a thread while reading nreplies lines here."""
    err = []

    def writer():
        try:
            for i in range(0, len(data), chunk):
                conn.send(data[i:i + chunk])
        except Exception as e:  # reported below
            err.append(e)

    th = threading.Thread(target=writer)
    got = 0
    parts = []
    t0 = now()
    th.start()
    while got < nreplies:
        b = conn.s.recv(1 << 20)
        if not b:
            break
        got += b.count(b"\n")
        if check is not None:
            parts.append(b)
    t1 = now()
    th.join()
    if err:
        raise err[0]
    if got < nreplies:
        raise RuntimeError("only %d of %d replies" % (got, nreplies))
    bad = 0
    if check is not None:
        lines = b"".join(parts).split(b"\n")[:nreplies]
        bad = sum(1 for x in lines if x != check)
    return t1 - t0, bad


# ------------------------------------------------------ measurements -----
def m_startup(kind, root, n):
    sock, reply = [], []
    inst = Instance(kind, root, "startup")
    try:
        for _ in range(n):
            inst.start()
            sock.append(inst.t_socket * 1e3)
            reply.append(inst.t_reply * 1e3)
            inst.stop()
    finally:
        inst.close()
    return {"socket_ms": median(sock), "first_reply_ms": median(reply),
            "all_first_reply_ms": reply}


def m_rss(kind, root, nreq):
    inst = Instance(kind, root, "rss").start()
    try:
        time.sleep(0.3)
        m0 = memory(inst.pid)
        c = Conn(inst.sock)
        parts = []
        for i in range(nreq):
            r = MIX[i % len(MIX)]
            parts.append(r % i if b"%d" in r else r)
        secs, _ = stream(c, b"".join(parts), nreq)
        c.close()
        time.sleep(0.2)
        m1 = memory(inst.pid)
        threads = counters(inst.pid)["threads"]
    finally:
        inst.close()
    return {"start": m0, "after": m1, "requests": nreq, "secs": secs,
            "threads": threads}


def m_idle(kind, root, secs):
    inst = Instance(kind, root, "idle").start()
    out = {}
    try:
        time.sleep(1.0)
        a = counters(inst.pid)
        time.sleep(secs)
        out["no_client"] = delta(a, counters(inst.pid))
        c = Conn(inst.sock)
        c.call(PING)
        time.sleep(1.0)
        a = counters(inst.pid)
        time.sleep(secs)
        out["idle_client"] = delta(a, counters(inst.pid))
        c.close()
    finally:
        inst.close()
    out["secs"] = secs
    return out


def m_ping(kind, root, nseq, npipe):
    inst = Instance(kind, root, "ping").start()
    out = {}
    try:
        c = Conn(inst.sock)
        for _ in range(min(1000, nseq)):
            c.call(PING)
        rtt = [0.0] * nseq
        a = counters(inst.pid)
        t0 = now()
        for i in range(nseq):
            t = now()
            c.send(PING)
            line = c.read_line()
            rtt[i] = now() - t
            if line != PONG:
                raise RuntimeError("bad reply %r" % line)
        wall = now() - t0
        d = delta(a, counters(inst.pid))
        rtt.sort()
        out["seq"] = {"rps": nseq / wall, "p50_us": rtt[nseq // 2] * 1e6,
                      "p99_us": rtt[int(nseq * 0.99)] * 1e6,
                      "cpu_us_per_req": d["cpu_s"] / nseq * 1e6,
                      "sched_us_per_req": d["sched_s"] / nseq * 1e6,
                      "ctxt_per_req": d["ctxt"] / nseq}
        a = counters(inst.pid)
        wall, bad = stream(c, PING * npipe, npipe, check=PONG)
        d = delta(a, counters(inst.pid))
        out["pipe"] = {"rps": npipe / wall, "wall_s": wall, "bad": bad,
                       "cpu_us_per_req": d["cpu_s"] / npipe * 1e6,
                       "sched_us_per_req": d["sched_s"] / npipe * 1e6,
                       "ctxt_per_req": d["ctxt"] / npipe}
        c.close()
        if bad:
            raise RuntimeError("%d wrong pipelined replies" % bad)
    finally:
        inst.close()
    return out


def m_sigterm(kind, root, n, timeout=5.0):
    inst = Instance(kind, root, "sigterm")
    hangs = nonzero = 0
    statuses = {}
    exit_ms = []
    try:
        for _ in range(n):
            inst.start()
            t = now()
            rc, hung = inst.stop(timeout)
            if hung:
                hangs += 1
            else:
                exit_ms.append((now() - t) * 1e3)
                if rc != 0:
                    nonzero += 1
            statuses[str(rc)] = statuses.get(str(rc), 0) + 1
    finally:
        inst.close()
    return {"cycles": n, "hangs": hangs, "nonzero": nonzero,
            "statuses": statuses, "exit_ms": median(exit_ms)}


def m_stall(kind, root, secs):
    """Fill the agent's output while never reading, then watch it."""
    inst = Instance(kind, root, "stall").start()
    out = {}
    try:
        time.sleep(0.3)
        out["rss_idle_kB"] = memory(inst.pid)["VmRSS"]
        c = Conn(inst.sock)
        c.s.setblocking(False)
        data = PING * 4096
        sent = 0
        last = now()
        t_end = now() + 10
        # Write until nothing has been accepted for 0.5 s: the agent has
        # stopped reading (or, like qemu-ga, is stuck writing).
        while now() - last < 0.5 and now() < t_end:
            try:
                sent += c.s.send(data)
                last = now()
            except BlockingIOError:
                time.sleep(0.01)
        a = counters(inst.pid)
        t0 = now()
        peak = 0
        while now() - t0 < secs:
            try:
                sent += c.s.send(data)
            except BlockingIOError:
                pass
            peak = max(peak, memory(inst.pid)["VmRSS"])
            time.sleep(0.05)
        d = delta(a, counters(inst.pid))
        window = now() - t0
        peak = max(peak, memory(inst.pid)["VmHWM"])
        out.update(requests_written=sent // len(PING),
                   cpu_pct=100 * d["cpu_s"] / window,
                   sched_pct=100 * d["sched_s"] / window, ctxt=d["ctxt"],
                   rss_peak_kB=peak, window_s=window)
        c.s.close()
        # Does it serve the next client?
        try:
            c2 = Conn(inst.sock, timeout=5)
            out["next_client_answered"] = c2.call(PING) == PONG
            c2.close()
        except OSError:
            out["next_client_answered"] = False
    finally:
        inst.close()
    return out


def garbage_block(size=1 << 20, seed=8020):
    """Random bytes without quotes (no string, so no request can form)
    and without 0xFE/0xFF (no silent resets)."""
    table = bytes(range(256)).translate(
        bytes.maketrans(b"\"'\xfe\xff", b"xyzw"))
    return random.Random(seed).randbytes(size).translate(table)


def m_garbage(kind, root, mib, timeout):
    inst = Instance(kind, root, "garbage").start()
    out = {"mib": mib}
    try:
        time.sleep(0.3)
        out["rss_idle_kB"] = memory(inst.pid)["VmRSS"]
        c = Conn(inst.sock, timeout=timeout)
        block = garbage_block()
        probe = b'\xff\n{"execute":"guest-ping","id":"after-garbage"}\n'
        want = b'{"return": {}, "id": "after-garbage"}'
        err = []
        peak = [0]
        done = threading.Event()

        def writer():
            try:
                for _ in range(mib):
                    c.send(block)
                c.send(probe)
            except Exception as e:  # reported below
                err.append(e)

        def sampler():
            while not done.wait(0.05):
                try:
                    peak[0] = max(peak[0], memory(inst.pid)["VmRSS"])
                except OSError:
                    return

        th = threading.Thread(target=writer)
        sm = threading.Thread(target=sampler)
        t0 = now()
        th.start()
        sm.start()
        lines = 0
        tail = b""
        answered = False
        deadline = now() + timeout
        while now() < deadline:
            try:
                b = c.s.recv(1 << 20)
            except socket.timeout:
                break
            if not b:
                break
            buf = tail + b
            lines += b.count(b"\n")
            if want + b"\n" in buf:
                answered = True
                break
            tail = buf[-len(want) - 2:]
        secs = now() - t0
        done.set()
        sm.join()
        c.s.close()
        th.join(timeout)
        time.sleep(0.3)
        # VmHWM is the true peak; sampling misses a burst that short.
        hwm = memory(inst.pid)["VmHWM"]
        out.update(answered=answered, reply_lines=lines, secs=secs,
                   rss_peak_kB=max(peak[0], hwm), rss_sampled_peak_kB=peak[0],
                   rss_after_kB=memory(inst.pid)["VmRSS"],
                   write_error=str(err[0]) if err else None)
    finally:
        inst.close()
    return out


# ------------------------------------------------------------ report -----
def agg(runs, path):
    """Median over runs of a value at path ('a.b.c')."""
    vals = []
    for r in runs:
        v = r
        for k in path.split("."):
            v = v.get(k) if isinstance(v, dict) else None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            vals.append(v)
    return median(vals)


def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        if v and abs(v) < 0.01:
            s = "%.2g" % v
        elif abs(v) < 1:
            s = "%.3f" % v
        elif abs(v) >= 100:
            s = "%.0f" % v
        elif abs(v) >= 10:
            s = "%.1f" % v
        else:
            s = "%.2f" % v
    else:
        s = str(v)
    return s + unit


def report(res, args):
    O, Q = res.get("ours", {}), res.get("qemu-ga", {})
    rows = []
    targets = []

    def row(label, path, unit="", target=None, better="lower"):
        o, q = agg(O.get(path.split(":")[0], []), path.split(":")[1]), \
            agg(Q.get(path.split(":")[0], []), path.split(":")[1])
        ratio = (o / q) if (o is not None and q) else None
        verdict = ""
        if target is not None and o is not None:
            ok, text = target(o, q)
            verdict = "%s %s" % ("PASS" if ok else "FAIL", text)
            targets.append((label, ok))
        rows.append((label, fmt(o, unit), fmt(q, unit),
                     "-" if ratio is None else "%.2fx" % ratio,
                     better, verdict))

    le = lambda lim: lambda o, q: (o <= lim, "<= %s" % fmt(lim))
    zero = lambda o, q: (o == 0, "== 0")

    def times(k):
        return lambda o, q: (q is not None and o >= k * q,
                             ">= %gx qemu-ga" % k)

    row("VmRSS after start (kB)", "rss:start.VmRSS", "", le(2048))
    row("VmHWM after start (kB)", "rss:start.VmHWM")
    row("VmRSS after %d requests (kB)" % args.requests, "rss:after.VmRSS",
        "", le(2048))
    row("VmHWM after %d requests (kB)" % args.requests, "rss:after.VmHWM")
    row("  Pss after (kB)", "rss:after.Pss")
    row("  RssAnon after (kB)", "rss:after.RssAnon")
    row("  RssFile after (kB)", "rss:after.RssFile")
    row("threads", "rss:threads")
    row("idle %gs, no client: ctxt switches" % args.idle_secs,
        "idle:no_client.ctxt", "", zero)
    row("idle, no client: CPU ms", "idle:no_client.sched_s_ms")
    row("idle %gs, client connected: ctxt" % args.idle_secs,
        "idle:idle_client.ctxt", "", zero)
    row("idle, client connected: CPU ms", "idle:idle_client.sched_s_ms")
    row("start -> socket (ms)", "startup:socket_ms")
    row("start -> first ping reply (ms)", "startup:first_reply_ms")
    row("ping one at a time (req/s)", "ping:seq.rps", "", times(1),
        "higher")
    row("  p50 round trip (us)", "ping:seq.p50_us")
    row("  p99 round trip (us)", "ping:seq.p99_us")
    row("  agent CPU per request (us)", "ping:seq.cpu_us_per_req")
    row("  same from schedstat (us)", "ping:seq.sched_us_per_req")
    row("ping pipelined (req/s)", "ping:pipe.rps", "", times(10), "higher")
    row("  agent CPU per request (us)", "ping:pipe.cpu_us_per_req")
    row("  same from schedstat (us)", "ping:pipe.sched_us_per_req")
    row("  ctxt switches per request", "ping:pipe.ctxt_per_req")
    row("SIGTERM cycles: hangs (of %d)" % args.cycles, "sigterm:hangs", "",
        zero)
    row("SIGTERM cycles: non-zero exits", "sigterm:nonzero", "", zero)
    row("SIGTERM -> exit (ms)", "sigterm:exit_ms")
    row("stalled client: agent CPU %", "stall:cpu_pct", "",
        lambda o, q: (o < 1.0, "< 1 %"))
    row("stalled client: VmRSS idle (kB)", "stall:rss_idle_kB")
    row("stalled client: peak VmRSS (kB)", "stall:rss_peak_kB")
    row("stalled client: requests taken", "stall:requests_written")
    row("stalled client: next client served", "stall:next_ok", "",
        lambda o, q: (o == 1, "yes"), "higher")
    row("garbage: MiB sent", "garbage:mib", "", None, "-")
    row("garbage: idle VmRSS (kB)", "garbage:rss_idle_kB")
    row("garbage: peak VmRSS (kB)", "garbage:rss_peak_kB", "",
        lambda o, q: (o - agg(O["garbage"], "rss_idle_kB") <= 4096,
                      "<= idle + 4 MiB"))
    row("garbage: VmRSS after (kB)", "garbage:rss_after_kB", "",
        lambda o, q: (o - agg(O["garbage"], "rss_idle_kB") <= 2048,
                      "<= idle + 2 MiB"))
    row("garbage: reply lines", "garbage:reply_lines")
    row("garbage: then answered", "garbage:answered_n", "",
        lambda o, q: (o == 1, "yes"), "higher")
    row("garbage: seconds", "garbage:secs")
    rows = [r for r in rows if r[1] != "-" or r[2] != "-"]
    w = [max(len(r[i]) for r in rows + [HEAD]) for i in range(6)]
    out = []
    for r in [HEAD] + rows:
        out.append("  ".join(
            (r[i].ljust(w[i]) if i in (0, 4, 5) else r[i].rjust(w[i]))
            for i in range(6)).rstrip())
    return "\n".join(out), targets


HEAD = ("metric (median of runs)", "ours", "qemu-ga", "ours/qga", "better",
        "target")


def derive(res):
    """Values the table wants in a simpler shape."""
    for runs in res.values():
        for r in runs.get("idle", []):
            for ph in ("no_client", "idle_client"):
                r[ph]["sched_s_ms"] = r[ph]["sched_s"] * 1e3
        for r in runs.get("stall", []):
            r["next_ok"] = 1 if r.get("next_client_answered") else 0
        for r in runs.get("garbage", []):
            r["answered_n"] = 1 if r.get("answered") else 0


# -------------------------------------------------------------- main -----
def find_agent(arg):
    cands = [arg] if arg else []
    if os.environ.get("AGENT"):
        cands.append(os.environ["AGENT"])
    cands += ["src/fsfreeze-agent", "../src/fsfreeze-agent",
              os.path.join(HERE, "..", "src", "fsfreeze-agent")]
    for c in cands:
        if c and os.access(c, os.X_OK) and os.path.isfile(c):
            return os.path.abspath(c)
    return None


def main():
    ap = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", help="our binary (default: $AGENT, "
                    "./src/fsfreeze-agent, ../src/fsfreeze-agent)")
    ap.add_argument("--qemu-ga", default="/usr/sbin/qemu-ga")
    ap.add_argument("--no-qemu-ga", action="store_true",
                    help="measure ours alone")
    ap.add_argument("--quick", action="store_true",
                    help="small counts: a smoke run of a minute or two")
    ap.add_argument("--json", help="write the raw numbers here")
    ap.add_argument("--only", default="rss,idle,startup,ping,sigterm,stall,"
                    "garbage", help="comma list of measurements")
    ap.add_argument("--runs", type=int, help="runs per measurement")
    a = ap.parse_args()
    q = a.quick
    a.runs = a.runs or (1 if q else 3)
    a.requests = 10000 if q else 100000
    a.idle_secs = 2.0 if q else 10.0
    a.starts = 10 if q else 30
    a.nseq = 2000 if q else 20000
    a.npipe = 20000 if q else 100000
    a.cycles = 100 if q else 1000
    a.stall_secs = 3.0
    a.garbage_mib = 10 if q else 100
    a.qga_garbage_mib = 1
    only = set(a.only.split(","))

    kinds = []
    ours = find_agent(a.agent)
    if ours is None:
        ap.error("our agent not found: give --agent PATH or set $AGENT")
    kinds.append(Kind("ours", ours))
    if not a.no_qemu_ga:
        if not os.access(a.qemu_ga, os.X_OK):
            ap.error("%s not found (--no-qemu-ga to skip it)" % a.qemu_ga)
        kinds.append(Kind("qemu-ga", a.qemu_ga))

    root = tempfile.mkdtemp(prefix="agentbench-")
    res = {k.name: {} for k in kinds}
    meta = {"argv": sys.argv, "agents": {k.name: k.binary for k in kinds},
            "quick": q, "runs": a.runs, "nproc": os.cpu_count(),
            "uname": " ".join(os.uname()), "loadavg": []}
    plan = [
        ("rss", lambda k: m_rss(k, root, a.requests)),
        ("idle", lambda k: m_idle(k, root, a.idle_secs)),
        ("startup", lambda k: m_startup(k, root, a.starts)),
        ("ping", lambda k: m_ping(k, root, a.nseq, a.npipe)),
        ("stall", lambda k: m_stall(k, root, a.stall_secs)),
        ("garbage", lambda k: m_garbage(
            k, root, a.garbage_mib if k.name == "ours" else a.qga_garbage_mib,
            120)),
        ("sigterm", lambda k: m_sigterm(k, root, a.cycles)),
    ]
    broke = []
    try:
        for name, fn in plan:
            if name not in only:
                continue
            nruns = 1 if name == "sigterm" else a.runs
            for r in range(nruns):
                order = kinds if r % 2 == 0 else kinds[::-1]
                meta["loadavg"].append(os.getloadavg()[0])
                for k in order:
                    log("%-8s run %d: %s ..." % (name, r + 1, k.name))
                    # One broken measurement does not stop the others.
                    try:
                        x = fn(k)
                    except Exception as e:
                        broke.append("%s %s run %d: %r" %
                                     (name, k.name, r + 1, e))
                        log("  broke: %r" % (e,))
                        continue
                    res[k.name].setdefault(name, []).append(x)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    derive(res)
    table, targets = report(res, a)
    print("$ " + " ".join(sys.argv))
    for k in kinds:
        print("%-8s %s" % (k.name, k.binary))
    print("%d CPUs, load %s; %d run(s) per measurement%s" % (
        os.cpu_count(), " ".join("%.2f" % x for x in os.getloadavg()),
        a.runs, ", --quick" if q else ""))
    print()
    print(table)
    print()
    npass = sum(1 for _, ok in targets if ok)
    print("targets: %d of %d PASS" % (npass, len(targets)))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"meta": meta, "results": res, "broken": broke,
                       "targets": dict(targets)}, f, indent=1,
                      sort_keys=True)
    if broke:
        print("BROKEN (no numbers for these):")
        for b in broke:
            print("  " + b)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
