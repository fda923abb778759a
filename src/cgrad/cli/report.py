"""`python -m cgrad bench`: every workload on every engine, one markdown table; and
`bench --compare A.json B.json`, two saved runs side by side.

The JSON a run saves (--json) is documented in BENCHMARKS.md ("The JSON a run saves"):
{"schema": 2, "mode", "machine": {"cpu", "cores", "python", "platform", "kernel_path",
"versions"}, "results": {workload key: {"label", "unit", "kind", "engines": {engine:
{"median", "spread", "repeats"} or {"not_run": why}}}}, "microgpt": [...]}.
"""
import gc
import importlib
import json
import math
import os
import platform
import sys

from cgrad.cli.benchmarking import (ENGINES, TORCH_DEFAULT_THREADS, WORKLOADS, Unsupported,
                                     measure)

SCHEMA = 2
BASELINES = (("micrograd", "micrograd"), ("PyTorch", "torch (scalar)"))
PEERS = ("micrograd", "torch", "numpy", "jax")


def cpu_name():
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return name


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(l.split(":", 1)[1].split() for l in f if l.startswith("flags"))
    except (OSError, StopIteration):
        return ""
    return " ".join(f for f in ("avx2", "fma", "avx512f") if f in flags)


def versions():
    """{peer: version or None (not installed)}."""
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for name in PEERS:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def machine():
    try:
        from cgrad._replay import kernel_path
        path = kernel_path()
    except ImportError:
        path = "unknown (numpy missing)"
    return {"cpu": cpu_name(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(),
            "python": platform.python_version(), "platform": platform.system(),
            "kernel_path": path, "versions": versions()}


def header(m, mode):
    peers = ", ".join(f"{k} {v}" if v else f"{k} not installed" for k, v in m["versions"].items())
    return (f"{mode} run on {m['cpu']} ({m['cores']} cores; {m['cpu_flags'] or 'no AVX2'}), "
            f"{m['platform']}, Python {m['python']}\n"
            f"replay's kernels: {m['kernel_path']}\n"
            f"peers: {peers}; PyTorch on 1 thread unless an engine says 'default threads' "
            f"(torch's default, {m.get('torch_default_threads') or 'not run'}); Python's GC "
            f"on unless an engine says 'gc off'")


def format_amount(value, kind):
    if kind == "memory":
        return f"{value:.0f} B"
    if kind == "depth":
        return f"{value:,}" if value else "fails at 1,000"
    for scale, unit in ((1e-9, "ns"), (1e-6, "us"), (1e-3, "ms")):
        if value < scale * 1000:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} s"


def ratio(ours, theirs, kind):
    """How many times better `ours` is than `theirs` (depth: bigger is better)."""
    if not ours or not theirs:
        return "-"
    r = ours / theirs if kind == "depth" else theirs / ours
    return f"{r:.3g}x"


def selected(only):
    if not only:
        return WORKLOADS
    chosen = [w for w in WORKLOADS if w.key in only]
    unknown = set(only) - {w.key for w in WORKLOADS}
    if unknown:
        raise SystemExit(f"cgrad bench: unknown workload {sorted(unknown)}: choose from "
                         f"{[w.key for w in WORKLOADS]}")
    return chosen


def run(mode="full", engines=None, only=None, progress=sys.stderr):
    """{workload key: {"label", "unit", "kind", "engines": {engine: result}}}"""
    engines = engines or ENGINES
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise SystemExit(f"cgrad bench: unknown engine {sorted(unknown)}: choose from {ENGINES}")
    results = {}
    for workload in selected(only):
        row = {}
        results[workload.key] = {"label": workload.label(mode), "unit": workload.unit,
                                 "kind": workload.kind, "size": workload.sizes[mode],
                                 "engines": row}
        for engine in engines:
            print(f"  {workload.label(mode)} / {engine} ...", file=progress, flush=True)
            try:
                row[engine] = measure(workload, engine, mode,
                                      budget=0.3 if mode == "quick" else 8.0)
            except Unsupported as why:
                row[engine] = {"not_run": str(why)}
            gc.collect()
    return results


def table(results):
    lines = ["| workload | engine | median | spread | vs micrograd | vs PyTorch |",
             "|---|---|---|---|---|---|"]
    not_run = {}   # (engine, why) -> workloads: listed once, under the table
    for key, w in results.items():
        row = w["engines"]
        for engine, r in row.items():
            if "not_run" in r:
                not_run.setdefault((engine, r["not_run"]), []).append(w["label"])
                continue
            base = []
            for _, name in BASELINES:
                b = row.get(name)
                if name == "torch (scalar)" and (b is None or "not_run" in b):
                    b = row.get("torch (batched)")     # the batched figure instead
                base.append(b["median"] if b and "median" in b else None)
            unit = f" per {w['unit']}" if w["kind"] == "time" else ""
            lines.append(
                f"| {w['label']} | {engine} | {format_amount(r['median'], w['kind'])}{unit} | "
                f"{r['spread'] * 100:.0f}% of {r['repeats']} | "
                f"{ratio(r['median'], base[0], w['kind'])} | "
                f"{ratio(r['median'], base[1], w['kind'])} |")
    lines.append("\nKey: median over the runs (time per op, node, step or product; bytes; "
                 "chain depth); spread: the interquartile range over the median, of that "
                 "many runs; vs micrograd / vs PyTorch: how many times faster (smaller, "
                 "deeper) than micrograd 0.1.0 and than PyTorch float64 on 0-d tensors "
                 "(else on batched tensors), in this run.")
    if not_run:
        lines.append("\nNot run:\n")
        for (engine, why), labels in not_run.items():
            lines.append(f"- {engine}: {why} ({len(labels)} workload"
                         f"{'s' if len(labels) > 1 else ''}: {'; '.join(labels)})")
    return "\n".join(lines)


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names, values = [], []
    for w in results.values():
        ours, theirs = w["engines"].get("cgrad", {}), w["engines"].get("micrograd", {})
        if ours.get("median") and theirs.get("median"):
            names.append(w["label"])
            values.append(ours["median"] / theirs["median"] if w["kind"] == "depth"
                          else theirs["median"] / ours["median"])
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(names) + 1.5))
    ax.barh(names, values)
    ax.set_xscale("log")
    ax.set_xlabel("cgrad's advantage over micrograd 0.1.0 (x, log scale)")
    fig.tight_layout()
    fig.savefig(path)


# ---- two runs compared --------------------------------------------------------------------

NOISE_FLOOR = 0.10   # differences under 10% are never called real


def compare(a, b):
    """Rows (workload label, engine, median A, median B, B/A, verdict) for every figure
    both runs have.  A difference is beyond the noise when the ratio departs from 1 by
    more than both runs' spreads together, and by at least NOISE_FLOOR (the rule
    pytest-benchmark's and asv's compare apply in spirit: a change must stand out of
    the runs' own variation)."""
    rows = []
    for key, wa in a["results"].items():
        wb = b["results"].get(key)
        if not wb:
            continue
        for engine, ra in wa["engines"].items():
            rb = wb["engines"].get(engine, {})
            if "median" not in ra or "median" not in rb or not ra["median"]:
                continue
            r = rb["median"] / ra["median"]
            if wa["kind"] == "depth":
                r = 1 / r if r else math.inf
            allowed = max(NOISE_FLOOR, ra.get("spread", 0) + rb.get("spread", 0))
            if abs(math.log(r)) <= math.log1p(allowed):
                verdict = "within noise"
            else:
                verdict = "slower" if r > 1 else "faster"
                if wa["kind"] == "memory":
                    verdict = "more memory" if r > 1 else "less memory"
            rows.append((wa["label"], engine, ra["median"], rb["median"], r, verdict,
                         wa["kind"]))
    return rows


def compare_table(a, b, names):
    lines = [f"A: {names[0]} ({a['machine']['cpu']}, {a['mode']})",
             f"B: {names[1]} ({b['machine']['cpu']}, {b['mode']})", "",
             "| workload | engine | A | B | B / A | |", "|---|---|---|---|---|---|"]
    for label, engine, ma, mb, r, verdict, kind in compare(a, b):
        mark = f"**{verdict}**" if verdict != "within noise" else verdict
        lines.append(f"| {label} | {engine} | {format_amount(ma, kind)} | "
                     f"{format_amount(mb, kind)} | {r:.2f} | {mark} |")
    lines.append("\nB / A is B's figure over A's (time or bytes: above 1 is slower or "
                 "bigger; depth: inverted).  A difference is marked when it exceeds both "
                 f"runs' spreads together and {NOISE_FLOOR:.0%}.")
    return "\n".join(lines)


def load(path):
    with open(path) as f:
        data = json.load(f)
    if data.get("schema") != SCHEMA:
        raise SystemExit(f"cgrad bench --compare: {path} is not a run saved by this "
                         f"version of `cgrad bench --json` (schema {data.get('schema')!r}, "
                         f"expected {SCHEMA})")
    return data


def main(args):
    if args.compare:
        print(compare_table(load(args.compare[0]), load(args.compare[1]), args.compare))
        return 0
    from cgrad.cli import microgpt_bench
    mode = "quick" if args.quick else "full"
    print(f"Running the {mode} benchmark suite...", file=sys.stderr)
    m = machine()
    results = {} if args.microgpt else run(mode, args.engine, args.only)
    m["torch_default_threads"] = (TORCH_DEFAULT_THREADS or [None])[0]
    microgpt = None
    if args.microgpt or not (args.only or args.engine):
        microgpt = microgpt_bench.main(quick=args.quick, progress=sys.stderr)
    print(f"\n{header(m, mode)}\n")
    if results:
        print(table(results))
    if microgpt:
        print("\nmicrograd's successor, microgpt (Karpathy's scalar GPT), four ways, and "
              "in PyTorch and JAX:\n")
        print(microgpt_bench.table(microgpt))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"schema": SCHEMA, "mode": mode, "machine": m, "results": results,
                       "microgpt": microgpt}, f, indent=1)
    if args.plot:
        plot(results, args.plot)
    return 0
