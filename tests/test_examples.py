"""The scripts in examples/ run as a user would run them."""
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def run(script, *args):
    out = subprocess.run([sys.executable, str(EXAMPLES / script), *args],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_moons_example_reaches_full_accuracy_as_micrograds_demo():
    lines = run("moons.py").splitlines()
    assert lines[-1].startswith("step 99 loss 0.0109") and lines[-1].endswith("accuracy 100.0%")


def test_train_command_reaches_95_percent_with_replay():
    pytest.importorskip("sklearn")
    out = subprocess.run([sys.executable, "-m", "cgrad", "train"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert sum(line.startswith("epoch") and line.endswith("ms)") for line in lines) == 20
    last = lines[-1]
    assert last.startswith("test accuracy") and float(last.split()[2].rstrip('%;')) >= 95.0, last
