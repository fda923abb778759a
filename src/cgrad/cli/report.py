"""`python -m cgrad bench`: every workload on every engine, one markdown table."""
import gc
import json
import os
import platform
import sys

from cgrad.cli.benchmarking import ENGINES, WORKLOADS, Unsupported, measure

BASELINES = ("micrograd", "torch (scalar)")


def machine_line():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"Python {platform.python_version()} on {cpu} ({os.cpu_count()} cores), "
            f"{platform.system()}; Python's GC on (default) unless an engine says 'gc off'; "
            f"torch limited to 1 thread")


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


def run(mode="full", engines=None, progress=sys.stderr):
    """{workload name: {engine: result dict or 'unsupported: why'}}"""
    results = {}
    for workload in WORKLOADS:
        row = results[workload.name] = {}
        for engine in engines or ENGINES:
            print(f"  {workload.name} / {engine} ...", file=progress, flush=True)
            try:
                row[engine] = measure(workload, engine, mode,
                                      budget=0.3 if mode == "quick" else 8.0)
            except Unsupported as why:
                row[engine] = f"unsupported: {why}"
            gc.collect()
    return results


def table(results):
    kinds = {w.name: w for w in WORKLOADS}
    lines = [f"| workload | engine | median per unit | spread (IQR) | vs micrograd | vs torch (scalar, else batched) |",
             "|---|---|---|---|---|---|"]
    not_run = {}   # (engine, why) -> workloads: listed once, under the table
    for name, row in results.items():
        w = kinds[name]
        for engine, r in row.items():
            if isinstance(r, str):
                not_run.setdefault((engine, r.removeprefix("unsupported: ")), []).append(name)
                continue
            base = [row.get(b) for b in BASELINES]
            if not isinstance(base[1], dict):  # no scalar-torch figure: compare with batched
                base[1] = row.get("torch (batched)")
            base = [b["median"] if isinstance(b, dict) else None for b in base]
            unit = f" / {w.unit}" if w.kind == "time" else ""
            lines.append(
                f"| {name} | {engine} | {format_amount(r['median'], w.kind)}{unit} | "
                f"{r['spread'] * 100:.0f}% of {r['repeats']} | "
                f"{ratio(r['median'], base[0], w.kind)} | {ratio(r['median'], base[1], w.kind)} |")
    if not_run:
        lines.append("\nNot run (the engine cannot do the workload):\n")
        for (engine, why), names in not_run.items():
            lines.append(f"- {engine}: {', '.join(names)} ({why})")
    return "\n".join(lines)


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names, values = [], []
    for name, row in results.items():
        ours, theirs = row.get("cgrad"), row.get("micrograd")
        if isinstance(ours, dict) and isinstance(theirs, dict) and ours["median"] and theirs["median"]:
            kind = next(w.kind for w in WORKLOADS if w.name == name)
            names.append(name)
            values.append(ours["median"] / theirs["median"] if kind == "depth"
                          else theirs["median"] / ours["median"])
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(names) + 1.5))
    ax.barh(names, values)
    ax.set_xscale("log")
    ax.set_xlabel("cgrad's advantage over micrograd 0.1.0 (x, log scale)")
    fig.tight_layout()
    fig.savefig(path)


def main(args):
    from cgrad.cli import microgpt_bench
    print(f"Running the {'quick' if args.quick else 'full'} benchmark suite...", file=sys.stderr)
    results = {} if args.microgpt else run("quick" if args.quick else "full")
    microgpt = microgpt_bench.main(quick=args.quick, progress=sys.stderr)
    print(f"\n{machine_line()}\n")
    if results:
        print(table(results))
        print()
    print("microgpt (Karpathy's scalar GPT), four ways:\n")
    print(microgpt_bench.table(microgpt))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine_line(), "results": results, "microgpt": microgpt},
                      f, indent=1)
    if args.plot:
        plot(results, args.plot)
    return 0
