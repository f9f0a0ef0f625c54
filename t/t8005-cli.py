#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""The command line: getopt_long's grammar, parsed by main.c itself."""

import os
import subprocess
import tempfile

from agenttest import AGENT, TAP

t = TAP()
tmp = tempfile.mkdtemp(prefix="t8005-")
conf = os.path.join(tmp, "agent.conf")
with open(conf, "w") as f:
    f.write("[agent]\nstate_dir = %s/state\n[hooks]\ndir =\n" % tmp)


def run(*args):
    p = subprocess.run([AGENT] + list(args), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=10)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


version = "fsfreeze-agent "
for args in (["-V"], ["--version"], ["-vV"], ["-v", "--version"]):
    rc, out, err = run(*args)
    t.ok(rc == 0 and out.startswith(version) and out.count("\n") == 1
         and err == "", "%s: the version on stdout, exit 0" % " ".join(args))

for args in (["-h"], ["--help"]):
    rc, out, err = run(*args)
    t.ok(rc == 0 and out.startswith("usage: fsfreeze-agent") and
         "--check" in out and err == "",
         "%s: the usage on stdout, exit 0" % " ".join(args))

# The three spellings of an option with an argument mean the same.
for args in (["-c", conf], ["-c" + conf], ["--config", conf],
             ["--config=" + conf]):
    rc, out, err = run(*(args + ["--check"]))
    t.ok(rc == 0 and out.rstrip().endswith("configuration OK") and
         ("configuration: " + conf) in out,
         "%s --check: that file, exit 0" % " ".join(args))

# -c names a file that must exist; without -c the default may be absent.
rc, out, err = run("-c", os.path.join(tmp, "missing.conf"), "--check")
t.ok(rc == 2 and "missing.conf: No such file or directory" in err,
     "-c with a missing file: exit 2, says which")

bad = [
    (["-x"], "unknown option '-x'"),
    (["-vx"], "unknown option '-x'"),
    (["--bogus"], "unknown option '--bogus'"),
    (["--conf=" + conf], "unknown option '--conf="),  # no abbreviations
    (["-c"], "option '-c' needs an argument"),
    (["--config"], "option '--config' needs an argument"),
    (["--verbose=yes"], "option '--verbose' takes no argument"),
    (["extra"], "unexpected argument 'extra'"),
    (["-v", "--", "-V"], "unexpected argument '-V'"),
    (["-V", "-x"], "unknown option '-x'"),  # the whole line is read first
    (["-m", "bogus", "-c", conf], "unknown method 'bogus'"),
]
for args, want in bad:
    rc, out, err = run(*args)
    t.ok(rc == 2 and want in err and out == "",
         "%s: exit 2, '%s'" % (" ".join(args), want))
    if rc != 2 or want not in err:
        t.diag("rc %d, stderr %r" % (rc, err[:200]))
rc, out, err = run("-x")
t.ok("usage: fsfreeze-agent" in err, "a bad option is followed by the usage")

t.done()
