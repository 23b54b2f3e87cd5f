#!/usr/bin/env python3
"""Runs one command and reports its wall time and memory as one JSON line.

    benches/measure.py OUT.json -- COMMAND [ARGS...]

The command runs under GNU time (`/usr/bin/time -f '%e %M'`), whose %M is the
ru_maxrss that wait4() returns: the peak RSS of the *largest single process* in the
waited-for tree (the kernel folds a reaped child's maxrss into its parent's by taking
the max, not the sum). Terraform runs its AWS provider as a separate plugin process
alive at the same time as the core, so %M under-reports it. Hence a second figure:
every SAMPLE_MS milliseconds this helper sums VmRSS over the whole process tree below
it (walking /proc/*/stat parent links) and keeps the peak of that sum.

    peak_rss_kb = max(tree_peak_kb, time_maxrss_kb)

(tree sampling can miss a process that lives less than one interval; %M cannot.)

The JSON line: {"wall_s", "time_wall_s", "exit", "time_maxrss_kb", "tree_peak_kb",
"peak_rss_kb", "samples", "loadavg_1m"}. The command's own stdout/stderr pass through. Exit status
of this helper: the command's.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

SAMPLE_S = float(os.environ.get("BENCH_SAMPLE_MS", "10")) / 1000.0


def children_map():
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces and parentheses.
        rest = stat[stat.rfind(b")") + 2 :].split()
        ppid = int(rest[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            resident_pages = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return resident_pages * os.sysconf("SC_PAGE_SIZE") // 1024


def tree_rss_kb(root):
    kids = children_map()
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss_kb(pid)
        stack.extend(kids.get(pid, ()))
    return total


def main():
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: measure.py OUT.json -- COMMAND [ARGS...]")
    out_path, cmd = sys.argv[1], sys.argv[3:]
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        start = time.monotonic()
        proc = subprocess.Popen(["/usr/bin/time", "-f", "%e %M", "-o", tf.name] + cmd)
        peak, samples = 0, 0
        while proc.poll() is None:
            # The tree below /usr/bin/time (its own RSS is a few hundred kB).
            peak = max(peak, tree_rss_kb(proc.pid) - rss_kb(proc.pid))
            samples += 1
            time.sleep(SAMPLE_S)
        wall = time.monotonic() - start
        lines = [l for l in tf.read().splitlines() if l.strip()]
    # GNU time prints "Command exited with non-zero status N" before the figures.
    time_wall, maxrss = (float(x) for x in lines[-1].split())
    result = {
        "wall_s": round(wall, 4),
        "time_wall_s": time_wall,
        "exit": proc.returncode,
        "time_maxrss_kb": int(maxrss),
        "tree_peak_kb": peak,
        "peak_rss_kb": max(peak, int(maxrss)),
        "samples": samples,
        # The machine's load when the command ended: other work on the host skews
        # wall times (CPU-bound Terraform more than tenantform).
        "loadavg_1m": os.getloadavg()[0],
    }
    with open(out_path, "w") as f:
        json.dump(result, f)
        f.write("\n")
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
