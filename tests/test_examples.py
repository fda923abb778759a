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


def test_digits_example_reaches_95_percent():
    pytest.importorskip("sklearn")
    last = run("digits.py").splitlines()[-1]
    assert float(last.split()[-1].rstrip('%')) >= 95.0, last
