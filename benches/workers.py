#!/usr/bin/env python3
"""Scenario 6 of scripts/bench: provisioning throughput of `tenantform worker`.

    workers.py TF_BIN PLATFORM_TOML WORK_DIR OUT_DIR REQUESTS "1 2 4" [TIMEOUT_S]

For each worker count W: a fresh database and platform directory ([runs] executor =
"workers"), W `tenantform worker` processes (one run at a time each), then REQUESTS
Bronze requests that need no approval, submitted at once (one `request submit`
process each, all started together). Measured from the registry once every request is
settled: throughput in tenants per minute (requests / (last activation - first
submission)), and the time from submission to `active`, p50 and p99. Then the workers
get SIGTERM (they finish what is in flight and exit), every tenant is destroyed and
the database dropped.

The connection settings are the stack's (PG*, AWS_*, REDIS_URL, ...: its moto, with
IAM enforcement, which the validation's isolation checks need). Writes
OUT_DIR/workers.json and OUT_DIR/workers.md; exits 1 if a request did not end active.
"""

import json
import os
import random
import shutil
import signal
import string
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def psql(sql, database=None):
    env = dict(os.environ)
    if database:
        env["PGDATABASE"] = database
    out = subprocess.run(
        ["psql", "-v", "ON_ERROR_STOP=1", "-qAtX", "-F", "\t", "-c", sql],
        env=env, check=True, capture_output=True, text=True,
    )
    return [line.split("\t") for line in out.stdout.splitlines() if line]


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, -(-len(s) * p // 100) - 1))
    return s[int(k)]


def request_toml(tid):
    return (
        f'id = "{tid}"\nname = "Bench {tid}"\ntier = "bronze"\nregion = "ap-south-1"\n'
        f'budget_inr = 200000\nowner_email = "owner@{tid}.example"\ncost_center = "CC-BENCH"\n'
        f'data_classification = "internal"\nprotected = false\n'
    )


def run_one(tf_bin, platform, work, requests, workers, timeout):
    tag = "".join(random.choice(string.ascii_lowercase) for _ in range(5))
    database = f"bench_workers_{workers}_{tag}"
    base = os.path.join(work, f"workers-{workers}")
    specs, state = os.path.join(base, "specs"), os.path.join(base, "state")
    os.makedirs(os.path.join(specs, "tenants"))
    with open(platform) as f:
        text = f.read()
    for old, new in [
        ('executor = "embedded"', 'executor = "workers"'),
        ("heartbeat_secs = 10 ", "heartbeat_secs = 2 "),
        ("poll_secs = 5 ", "poll_secs = 1 "),
    ]:
        text = text.replace(old, new)
    with open(os.path.join(specs, "platform.toml"), "w") as f:
        f.write(text)
    psql(f"CREATE DATABASE {database}")
    env = dict(os.environ, PGDATABASE=database)
    env.pop("TENANTFORM_LOG", None)
    tf = [tf_bin, "--specs", specs, "--state", state, "--no-color"]
    procs = []
    try:
        for i in range(workers):
            log = open(os.path.join(base, f"worker-{i}.log"), "w")
            procs.append(subprocess.Popen(tf + ["worker"], env=env, stdout=log, stderr=log))
        ids = [f"bw{workers}-{tag}-{i:03d}" for i in range(requests)]
        files = []
        for tid in ids:
            path = os.path.join(base, f"{tid}.toml")
            with open(path, "w") as f:
                f.write(request_toml(tid))
            files.append(path)
        # Let the workers register and listen before the burst.
        time.sleep(1)

        def submit(path):
            return subprocess.run(
                tf + ["request", "submit", path, "--requester", "bench@example"],
                env=env, capture_output=True, text=True,
            )

        with ThreadPoolExecutor(max_workers=requests) as pool:
            results = list(pool.map(submit, files))
        for r in results:
            if r.returncode != 0:
                raise SystemExit(f"request submit failed:\n{r.stdout}\n{r.stderr}")
        deadline = time.time() + timeout
        while True:
            rows = psql(
                "SELECT count(*) FILTER (WHERE status IN ('active', 'rolled_back', 'failed')) "
                "FROM tenantform.requests", database,
            )
            if int(rows[0][0]) >= requests:
                break
            if time.time() > deadline:
                raise SystemExit(f"{workers} worker(s): not every request settled within {timeout}s")
            time.sleep(0.5)
        rows = psql(
            "SELECT status, extract(epoch FROM created_at), extract(epoch FROM activated_at) "
            "FROM tenantform.requests", database,
        )
        active = [(float(c), float(a)) for s, c, a in rows if s == "active"]
        other = [s for s, _, _ in rows if s != "active"]
        latencies = [a - c for c, a in active]
        span = max(a for _, a in active) - min(c for c, _ in active) if active else 0
        takeovers = int(psql("SELECT count(*) FROM tenantform.runs WHERE attempt > 1", database)[0][0])
        result = {
            "workers": workers,
            "requests": requests,
            "active": len(active),
            "not_active": other,
            "span_s": round(span, 2),
            "tenants_per_minute": round(len(active) / span * 60, 1) if span else None,
            "submit_to_active_p50_s": round(percentile(latencies, 50), 2) if latencies else None,
            "submit_to_active_p99_s": round(percentile(latencies, 99), 2) if latencies else None,
            "takeovers": takeovers,
            "load_1min_end": round(os.getloadavg()[0], 1),
        }
        print(f"bench: workers {workers}: {json.dumps(result)}", file=sys.stderr)
        return result
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
        # Every tenant of this run: spec in the registry, resources on every service.
        subprocess.run(tf + ["destroy", "--auto-approve"], env=env, capture_output=True)
        roles = [r[0] for r in psql(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE 'tenant\\_bw%'")]
        psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        for role in roles:
            psql(f'DROP ROLE IF EXISTS "{role}"')
        shutil.rmtree(base, ignore_errors=True)


def main():
    tf_bin, platform, work, out, requests, counts = sys.argv[1:7]
    timeout = int(sys.argv[7]) if len(sys.argv) > 7 else 3600
    results = [run_one(tf_bin, platform, work, int(requests), int(w), timeout) for w in counts.split()]
    with open(os.path.join(out, "workers.json"), "w") as f:
        json.dump(results, f, indent=2)
    lines = [
        f"Scenario 6, workers: {requests} Bronze requests (no approval needed) submitted at once to W "
        "`tenantform worker` processes (one run at a time each), release build, the stack's moto. "
        "Throughput from the first submission to the last activation; submit-to-active from the registry.",
        "",
        "| workers | active | tenants/minute | submit → active p50 s | p99 s | takeovers | load (1 min) at the end |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['workers']} | {r['active']}/{r['requests']} | {r['tenants_per_minute']} | "
            f"{r['submit_to_active_p50_s']} | {r['submit_to_active_p99_s']} | {r['takeovers']} | {r['load_1min_end']} |"
        )
    with open(os.path.join(out, "workers.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    if any(r["active"] != r["requests"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
