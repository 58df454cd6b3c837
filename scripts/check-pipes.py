#!/usr/bin/env python3
"""Fails when a shell script pipes into a quiet grep: `cmd | grep -q X`.

Under `set -o pipefail` that pipeline fails at random: grep -q exits at the first match, and
cmd dies of SIGPIPE on its next write (`ldd … | grep -q libcudart` failed 33 times in 300 on
one core). Read such output with `grep X >/dev/null`, which drains the pipe.

    scripts/check-pipes.py FILE...    exit 0: none; 1: some (each named FILE:LINE); 2: a FILE unreadable
"""
import re
import sys

# A pipe (not `||`), maybe `|&`, then optional VAR=value words, then grep/egrep/fgrep with any
# words before an option that makes it quiet (-q, -Eq, -qs, --quiet, --silent), up to the
# command's end.
QUIET_GREP = re.compile(
    r"(?:^|[^|])\|&?\s*(?:\w+=\S*\s+)*[ef]?grep\b[^|;&)]*?\s(?:-[A-Za-z0-9]*q[A-Za-z0-9]*|--quiet|--silent)(?:\s|$)")


def logical_lines(text):
    """The script's lines with continuations joined (`cmd |` or `\\` at a line's end), each
    with the number of its first physical line."""
    start, parts = None, []
    for n, line in enumerate(text.splitlines(), 1):
        code = line.split(" #", 1)[0].rstrip()
        if start is None:
            start = n
        parts.append(code.rstrip("\\"))
        if code.endswith("\\") or (code.endswith("|") and not code.endswith("||")):
            continue
        yield start, " ".join(parts)
        start, parts = None, []
    if parts:
        yield start, " ".join(parts)


def main(paths):
    found = 0
    for path in paths:
        try:
            text = open(path, encoding="utf-8").read()
        except OSError as e:
            print("check-pipes: cannot read %s: %s" % (path, e), file=sys.stderr)
            return 2
        for n, line in logical_lines(text):
            if line.lstrip().startswith("#"):
                continue
            if QUIET_GREP.search(line):
                print("%s:%d: a pipe into a quiet grep (use `grep X >/dev/null`): %s" % (path, n, line.strip()))
                found += 1
    return 1 if found else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
