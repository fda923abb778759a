"""What a step of microgpt unchanged on cgrad.Value at n_embd 64 costs, and where the
rest goes: the same 6 steps with Python's cyclic GC on and off, alternated, 3 rounds
after a first run; median ms per step (wall clock) and the kernel's share of it (system
CPU time: page faults on memory the process had not touched yet).  The program keeps
~1M Values alive in lists during a step.

    python benchmarks/microgpt_gc.py
"""
import gc
import resource
import statistics
import time

from cgrad import Value
from cgrad.datasets import make_names
from cgrad.programs.microgpt import run


def ms_per_step(collect, docs, steps=6):
    """(median wall ms per step, median system-CPU ms per step)."""
    marks = []

    def mark(step, loss):
        marks.append((time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_stime))
    gc.enable() if collect else gc.disable()
    try:
        run(Value, docs, num_steps=steps, n_embd=64, n_head=4, block_size=64,
            num_samples=0, on_step=mark)
    finally:
        gc.enable()
    wall = statistics.median(b[0] - a[0] for a, b in zip(marks, marks[1:])) * 1e3
    system = statistics.median(b[1] - a[1] for a, b in zip(marks, marks[1:])) * 1e3
    return wall, system


def main(rounds=3):
    docs = make_names()
    first = ms_per_step(True, docs)
    on, off = [], []
    for r in range(rounds):
        for collect in ((True, False) if r % 2 == 0 else (False, True)):
            (on if collect else off).append(ms_per_step(collect, docs))

    def show(runs):
        return (f"{statistics.median(w for w, _ in runs):.0f} ms per step, system "
                f"{statistics.median(s for _, s in runs):.0f} "
                f"({', '.join(f'{w:.0f}/{s:.0f}' for w, s in runs)})")
    print(f"first run in the process: {first[0]:.0f} ms per step, system {first[1]:.0f}")
    print(f"then GC on: {show(on)}")
    print(f"     GC off: {show(off)}")


if __name__ == "__main__":
    main()
