"""The scripts in examples/ run as a user would run them."""
import os
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


def test_sweep_example_prints_the_same_table_wherever_it_runs():
    pytest.importorskip("sklearn")
    pytest.importorskip("joblib")
    places = [["--jobs", "1"], ["--jobs", "2"]]
    try:
        import dask.distributed  # noqa: F401
        places.append(["--dask"])           # a local cluster of worker processes
    except ImportError:
        pass
    tables = []
    for where in places:
        lines = run("sweep.py", "--epochs", "1", *where).splitlines()
        assert len(lines) == 2 + 12 + 1 and lines[-1].startswith("36 models in")
        tables.append(lines[:-1])
    cells = [cell for row in tables[0][2:] for cell in row.split("|")[3].split(",")]
    assert len(cells) == 36 and all(float(c.strip().rstrip("%")) > 10 for c in cells)
    assert all(table == tables[0] for table in tables)


def test_train_command_reaches_95_percent_with_replay():
    pytest.importorskip("sklearn")
    out = subprocess.run([sys.executable, "-m", "cgrad", "train"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert sum(line.startswith("epoch") and line.endswith("ms)") for line in lines) == 20
    last = lines[-1]
    assert last.startswith("test accuracy") and float(last.split()[2].rstrip('%;')) >= 95.0, last


def test_command_line_version_and_missing_optional_dependencies(tmp_path):
    import cgrad
    out = subprocess.run([sys.executable, "-m", "cgrad", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == f"cgrad {cgrad.__version__}"
    # a matplotlib that cannot be found: the demo stops before training, with the fix
    (tmp_path / "sitecustomize.py").write_text(
        "import importlib.util, sys\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name == 'matplotlib' "
        "else real(name, *a)\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    run = subprocess.run([sys.executable, "-m", "cgrad", "demo", "--plot", "x.png"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode != 0 and "pip install matplotlib" in run.stderr
    assert "step" not in run.stdout


def test_physics_informed_example_finds_sin_from_its_derivative():
    last = run("pinn.py", "1200").splitlines()[-1]
    error = float(last.rsplit(":", 1)[1])
    assert error < 0.02, last    # the network never sees sin(x), only du/dx = cos(x)
