"""What a fresh program pays before its steps settle: `cgrad.compile(fn, dynamic=True)`
on one of `python -m cgrad bench --scale`'s workloads, phase by phase (the optimizer,
the traces over two and three examples, recording the two-example graph, checking the
template, copying the step for the batch, then the first steps), in fresh processes,
with the minor page faults each phase took (memory touched for the first time).

    python benchmarks/first_steps.py [WORKLOAD_INDEX] [PROCESSES]

Medians over the processes (default: workload 4, MLP(784, [128, 10]) at batch 128; 7
processes).  `PYTHONPATH=OTHER/src` measures another build.
"""
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, random, resource, sys, time
import numpy as np
from cgrad.cli import scale
import cgrad, cgrad.compiled, cgrad.losses, cgrad.optim
from cgrad import nn
from cgrad._replay import batch_template
from cgrad.compiled import loss_and_outputs

name, nin, nouts, batch, loss_kind, opt_kind = scale.WORKLOADS[int(sys.argv[1])]
X, y = scale.workload_data(nin, batch, loss_kind)
random.seed(0)
model = nn.MLP(nin, nouts)
phases = []

def now():
    return time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt

last = now()

def phase(label):
    global last
    t = now()
    phases.append((label, 1e3 * (t[0] - last[0]), t[1] - last[1]))
    last = t

opt = scale.cgrad_optimizer(model, opt_kind)
phase("optimizer")
fn, targets = scale.cgrad_loss(model, nouts, loss_kind, y)
compiled = cgrad.compile(fn, dynamic=True)
data = (np.asarray(X, dtype=float), np.asarray(targets, dtype=float))
two = compiled.traced(tuple(a[:2] for a in data))
three = compiled.traced(tuple(a[[0, 1, 2]] for a in data))
phase("traces")
recorded = compiled.recorded(two, input_grads=False)
phase("record")
loss3, outputs3 = loss_and_outputs(three[1])
template = batch_template(recorded, loss3, three[0], outputs3)
phase("check")
graph = template.graph(batch)
phase("copy")
for k in range(4):
    graph.step(*data, optimizer=opt)
    phase(f"step {k + 1}")
print(json.dumps([name, phases]))
"""


def setup_ms(phases):
    """The phases up to the end of the first step."""
    labels = [label for label, _, _ in phases]
    return sum(ms for _, ms, _ in phases[:labels.index("step 1") + 1])


def main():
    index = sys.argv[1] if len(sys.argv) > 1 else "4"
    processes = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    runs = []
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")   # no BLAS threads spinning at start
    for _ in range(processes):
        out = subprocess.run([sys.executable, "-c", CHILD, index], capture_output=True,
                             text=True, check=True, env=env).stdout
        name, phases = json.loads(out.strip().splitlines()[-1])
        runs.append(phases)
    print(f"{name}: {processes} fresh processes, medians\n")
    print("| phase | ms | minor faults |\n|---|---|---|")
    for i, (label, _, _) in enumerate(runs[0]):
        ms = statistics.median(run[i][1] for run in runs)
        faults = statistics.median(run[i][2] for run in runs)
        print(f"| {label} | {ms:.2f} | {faults:.0f} |")
    setup = statistics.median(setup_ms(run) for run in runs)
    print(f"\nsetup (up to the end of the first step, as bench --scale counts it): "
          f"{setup:.1f} ms")


if __name__ == "__main__":
    main()
