#!/usr/bin/env python3
"""Summarises scripts/bench's measurements (runs.jsonl) into results.json and
results.md, and prints the table.

    report.py RUNS.jsonl OUT_DIR [--sizes ..] [--reps ..]
              [--tiers ..] [--parallelism ..] [--large ..] [--tools ..]

Per (N, scenario, tool): median, min and max wall time; median and max peak RSS; API
calls (median). Ratios use medians: Terraform / tenantform (time and peak RSS) and
tenantform / floor (time; plan and drift against the floor's reads). A figure whose
command ended unexpectedly is left out and counted in "failed".

State backends: tenantform's apply and destroy with its state in PostgreSQL
(apply-pgstate, destroy-pgstate) against the same commands with local state, as
"PostgreSQL / local" (target for the apply: at most 1.3x).
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess

SCENARIOS = ["apply", "plan", "plan-norefresh", "drift", "destroy"]
FLOOR_OF = {"apply": "apply", "plan": "read", "drift": "read", "destroy": "destroy"}
LABEL = {
    "apply": "apply from empty",
    "plan": "no-op plan, refresh",
    "plan-norefresh": "no-op plan, no refresh",
    "drift": "drift run (no drift)",
    "destroy": "destroy",
    "plan-norefresh-large": "no-op plan, no refresh",
}
# Scenario 9 (BENCH_DRIFT_LARGE): a drift run over many tenants on the real endpoints,
# read in bulk (tenantform's default) and one resource at a time.
DRIFT_LARGE = {
    "apply-drift-large": "apply from empty (before the drift runs)",
    "drift-large": "drift run, read in bulk (default)",
    "drift-large-each": "drift run, one read per resource (`--bulk-read never`)",
    "plan-norefresh-drift-large": "no-op plan, no refresh",
    "plan-json-drift-large": "no-op plan, no refresh, `--json`",
}
# Scenario with the state in PostgreSQL -> the same scenario with local state.
PGSTATE_OF = {"apply-pgstate": "apply", "destroy-pgstate": "destroy"}
PGSTATE_TARGET = {"apply-pgstate": 1.3}


def summary(runs):
    ok = [r for r in runs if r.get("ok")]
    if not ok:
        return {"runs": len(runs), "failed": len(runs)}
    wall = [r["wall_s"] for r in ok]
    rss = [r["peak_rss_kb"] for r in ok]
    return {
        "runs": len(runs),
        "failed": len(runs) - len(ok),
        "wall_s": {
            "median": round(statistics.median(wall), 3),
            "min": round(min(wall), 3),
            "max": round(max(wall), 3),
        },
        "peak_rss_kb": {"median": int(statistics.median(rss)), "max": max(rss)},
        "time_maxrss_kb_max": max(r["time_maxrss_kb"] for r in ok),
        "api_calls": int(statistics.median(r["api_calls"] for r in ok)),
        "loadavg_1m_max": max(r.get("loadavg_1m", 0) for r in ok),
    }


def ratio(a, b):
    if not a or not b or "wall_s" not in a or "wall_s" not in b:
        return None
    return round(a["wall_s"]["median"] / max(b["wall_s"]["median"], 1e-9), 2)


def rss_ratio(a, b):
    if not a or not b or "peak_rss_kb" not in a or "peak_rss_kb" not in b:
        return None
    return round(a["peak_rss_kb"]["median"] / max(b["peak_rss_kb"]["median"], 1), 1)


def fmt_time(s):
    if not s or "wall_s" not in s:
        return "failed"
    w = s["wall_s"]
    if s["runs"] == 1:
        return f"{w['median']:.2f}"
    return f"{w['median']:.2f} ({w['min']:.2f}–{w['max']:.2f})"


def fmt_mib(s):
    if not s or "peak_rss_kb" not in s:
        return "–"
    return f"{s['peak_rss_kb']['median'] / 1024:.0f}"


def fmt_x(x):
    return "–" if x is None else f"{x:g}×"


def git_rev():
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs")
    ap.add_argument("out")
    ap.add_argument("--sizes", default="")
    ap.add_argument("--reps", default="")
    ap.add_argument("--tiers", default="")
    ap.add_argument("--parallelism", default="10")
    ap.add_argument("--large", default="0")
    ap.add_argument("--tools", default="tenantform terraform floor")
    a = ap.parse_args()

    with open(a.runs) as f:
        runs = [json.loads(l) for l in f if l.strip()]
    groups = {}
    for r in runs:
        groups.setdefault((r["n"], r["scenario"], r["tool"]), []).append(r)
    sums = {k: summary(v) for k, v in groups.items()}

    rows = []
    sizes = sorted({r["n"] for r in runs if r["scenario"] in SCENARIOS})
    for n in sizes:
        for sc in SCENARIOS:
            t = sums.get((n, sc, "tenantform"))
            tf = sums.get((n, sc, "terraform"))
            fl = sums.get((n, FLOOR_OF.get(sc, ""), "floor"))
            if not t and not tf:
                continue
            rows.append({
                "n": n, "scenario": sc, "tenantform": t, "terraform": tf, "floor": fl,
                "terraform_over_tenantform": ratio(tf, t),
                "tenantform_over_floor": ratio(t, fl),
                "rss_terraform_over_tenantform": rss_ratio(tf, t),
            })
    state_rows = []
    for n in sorted({r["n"] for r in runs if r["scenario"] in PGSTATE_OF}):
        for sc, local_sc in PGSTATE_OF.items():
            pg = sums.get((n, sc, "tenantform"))
            local = sums.get((n, local_sc, "tenantform"))
            if not pg and not local:
                continue
            state_rows.append({
                "n": n, "scenario": local_sc, "local": local, "postgres": pg,
                "postgres_over_local": ratio(pg, local), "target": PGSTATE_TARGET.get(sc),
            })
    large = None
    large_path = os.path.join(a.out, "large-state.json")
    if os.path.exists(large_path):
        with open(large_path) as f:
            large = json.load(f)
        n = large["n"]
        t = sums.get((n, "plan-norefresh-large", "tenantform"))
        tf = sums.get((n, "plan-norefresh-large", "terraform"))
        large.update({
            "tenantform": t, "terraform": tf,
            "terraform_over_tenantform": ratio(tf, t),
            "rss_terraform_over_tenantform": rss_ratio(tf, t),
        })

    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git": git_rev(),
        "host": {"cpus": os.cpu_count(), "machine": platform.machine(), "kernel": platform.release()},
        "sizes": a.sizes.split(), "reps": a.reps, "tiers": a.tiers,
        "parallelism": a.parallelism,
        "notes": [
            "tenantform also creates each tenant's PostgreSQL part; the Terraform side has the AWS part only.",
            "Terraform's destroy runs with -refresh=false and without the Gold ElastiCache clusters (removed from its state first: it would wait for each deletion to end, which tenantform does not); tenantform deletes them.",
            "Peak RSS: the larger of GNU time's %M and the sampled sum over the process tree (Terraform core + provider plugin).",
            "Floor: tenantform's AWS calls through the SDK at the same parallelism, no engine, no PostgreSQL.",
        ],
    }
    drift_large = [
        {"n": r_n, "scenario": sc, "tenantform": sums.get((r_n, sc, "tenantform"))}
        for r_n in sorted({r["n"] for r in runs if r["scenario"] in DRIFT_LARGE})
        for sc in DRIFT_LARGE
        if sums.get((r_n, sc, "tenantform"))
    ]
    result = {"meta": meta, "scenarios": rows, "state_backends": state_rows, "large": large,
              "drift_large": drift_large}
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    cmd = "scripts/bench"
    env = []
    if a.sizes and a.sizes != "1 10 50":
        env.append(f'BENCH_SIZES="{a.sizes}"')
    if a.reps and a.reps != "3":
        env.append(f"BENCH_REPS={a.reps}")
    if a.large and a.large != "2000":
        env.append(f"BENCH_LARGE={a.large}")
    if a.tools and a.tools.split() != ["tenantform", "terraform", "floor"]:
        env.append(f'BENCH_TOOLS="{a.tools}"')
    if env:
        cmd = " ".join(env) + " " + cmd
    md = []
    md.append(f"`{cmd}` — {meta['date']}, git {meta['git']}, {meta['host']['cpus']} CPUs, "
              f"tiers round-robin {a.tiers}, parallelism {a.parallelism} for both tools, "
              f"{a.reps} repetition(s), alternating. Wall time in seconds: median (min–max); "
              "peak RSS of the process tree in MiB (median).")
    md.append("")
    md.append("| N | scenario | tenantform s | Terraform s | Terraform / tenantform | floor s | tenantform / floor "
              "| RSS tenantform | RSS Terraform | RSS ratio | API calls tenantform / Terraform / floor |")
    md.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t, tf, fl = r["tenantform"], r["terraform"], r["floor"]
        calls = " / ".join(str(s["api_calls"]) if s and "api_calls" in s else "–" for s in (t, tf, fl))
        md.append(
            f"| {r['n']} | {LABEL[r['scenario']]} | {fmt_time(t)} | {fmt_time(tf)} | "
            f"{fmt_x(r['terraform_over_tenantform'])} | {fmt_time(fl) if fl else '–'} | "
            f"{fmt_x(r['tenantform_over_floor'])} | {fmt_mib(t)} | {fmt_mib(tf)} | "
            f"{fmt_x(r['rss_terraform_over_tenantform'])} | {calls} |"
        )
    if state_rows:
        md.append("")
        md.append("tenantform with its state in PostgreSQL (`TENANTFORM_STATE_BACKEND=postgres`) "
                  "against local state files, same commands:")
        md.append("")
        md.append("| N | scenario | local state s | PostgreSQL state s | PostgreSQL / local | target |")
        md.append("|---|---|---|---|---|---|")
        for r in state_rows:
            target = f"≤ {r['target']:g}×" if r["target"] else "–"
            md.append(f"| {r['n']} | {LABEL[r['scenario']]} | {fmt_time(r['local'])} | "
                      f"{fmt_time(r['postgres'])} | {fmt_x(r['postgres_over_local'])} | {target} |")
    if large:
        md.append("")
        md.append(f"Scenario 5, engine overhead without a cloud: {large['n']} tenants, no-op plan without refresh.")
        md.append("")
        md.append("| tool | resources | state on disk | wall s | peak RSS MiB |")
        md.append("|---|---|---|---|---|")
        md.append(f"| tenantform | {large['tenantform_resources']} | "
                  f"{large['tenantform_state_bytes'] / 2**20:.1f} MiB ({large['n']} files) | "
                  f"{fmt_time(large['tenantform'])} | {fmt_mib(large['tenantform'])} |")
        md.append(f"| Terraform | {large['terraform_resources']} | "
                  f"{large['terraform_state_bytes'] / 2**20:.1f} MiB (1 file) | "
                  f"{fmt_time(large['terraform'])} | {fmt_mib(large['terraform'])} |")
        md.append(f"| Terraform / tenantform | | | {fmt_x(large['terraform_over_tenantform'])} | "
                  f"{fmt_x(large['rss_terraform_over_tenantform'])} |")
    if drift_large:
        md.append("")
        md.append("Scenario 9, a drift run over many tenants (synthetic specs, applied to the real "
                  "endpoints first; no drift):")
        md.append("")
        md.append("| N | scenario | wall s | peak RSS MiB | API calls |")
        md.append("|---|---|---|---|---|")
        for r in drift_large:
            t = r["tenantform"]
            md.append(f"| {r['n']} | {DRIFT_LARGE[r['scenario']]} | {fmt_time(t)} | {fmt_mib(t)} | "
                      f"{t.get('api_calls', '–')} |")
    md.append("")
    for note in meta["notes"]:
        md.append(f"- {note}")
    loads = [r["loadavg_1m"] for r in runs if "loadavg_1m" in r]
    if loads:
        md.append(f"- Host load (1-min average at the end of each command) ranged {min(loads):.1f}–{max(loads):.1f} "
                  f"on {meta['host']['cpus']} CPUs: other work on the machine slows CPU-bound commands.")
    failed = sum(s.get("failed", 0) for s in sums.values())
    if failed:
        md.append(f"- {failed} measured command(s) ended unexpectedly and are left out (see runs.jsonl).")
    text = "\n".join(md) + "\n"
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
