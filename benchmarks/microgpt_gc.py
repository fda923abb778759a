"""What Python's cyclic GC costs microgpt unchanged on cgrad.Value at n_embd 64: the
same 6 steps with the collector on and off, alternated, 3 rounds, median ms per step
(wall clock; the program keeps ~1M Values alive in lists during a step).

    python benchmarks/microgpt_gc.py
"""
import gc
import statistics
import time

from cgrad import Value
from cgrad.datasets import make_names
from cgrad.programs.microgpt import run


def ms_per_step(collect, docs, steps=6):
    marks = []
    gc.enable() if collect else gc.disable()
    try:
        run(Value, docs, num_steps=steps, n_embd=64, n_head=4, block_size=64,
            num_samples=0, on_step=lambda step, loss: marks.append(time.perf_counter()))
    finally:
        gc.enable()
    return statistics.median(b - a for a, b in zip(marks, marks[1:])) * 1e3


def main(rounds=3):
    docs = make_names()
    on, off = [], []
    for r in range(rounds):
        for collect in ((True, False) if r % 2 == 0 else (False, True)):
            (on if collect else off).append(ms_per_step(collect, docs))
    print(f"GC on: {statistics.median(on):.0f} ms per step ({', '.join(f'{x:.0f}' for x in on)}); "
          f"GC off: {statistics.median(off):.0f} ({', '.join(f'{x:.0f}' for x in off)})")


if __name__ == "__main__":
    main()
