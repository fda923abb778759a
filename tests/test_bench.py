"""`python -m cgrad bench` reads right: each row names the work it ran, each engine that
did not run says why, and two saved runs compare with the noise taken into account."""
import copy
import json
import re
import subprocess
import sys

import pytest

from cgrad.cli import report
from cgrad.cli.benchmarking import ENGINES, WORKLOADS


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "run.json"
    subprocess.run([sys.executable, "-m", "cgrad", "bench", "--quick", "--json", str(path),
                    "--only", "build", "--only", "demo-step", "--only", "hvp",
                    "--only", "memory"],
                   check=True, capture_output=True, text=True)
    return json.loads(path.read_text())


def test_every_row_names_the_work_it_ran(quick_run):
    assert quick_run["schema"] == report.SCHEMA and quick_run["mode"] == "quick"
    assert set(quick_run["results"]) == {"build", "demo-step", "hvp", "memory"}
    by_key = {w.key: w for w in WORKLOADS}
    for key, w in quick_run["results"].items():
        size = by_key[key].sizes["quick"]
        assert w["size"] == size
        numbers = [int(n.replace(",", "")) for n in re.findall(r"\d[\d,]*", w["label"])]
        assert size in numbers, (key, w["label"])          # the size it ran, not full's
    assert "2 moons" in quick_run["results"]["demo-step"]["label"]
    assert "8 points" in quick_run["results"]["hvp"]["label"]


def test_every_engine_ran_or_says_why(quick_run):
    for w in quick_run["results"].values():
        assert set(w["engines"]) == set(ENGINES)
        for engine, r in w["engines"].items():
            assert ("median" in r and r["median"] > 0) or (r.get("not_run") or "").strip(), \
                (engine, r)
    hvp = quick_run["results"]["hvp"]["engines"]
    assert "floats" in hvp["micrograd"]["not_run"]
    assert "batched" in hvp["torch (scalar)"]["not_run"]


def test_the_header_names_the_machine_and_the_peers(quick_run):
    m = quick_run["machine"]
    assert m["cpu"] and m["python"] and m["kernel_path"]
    assert set(m["versions"]) == set(report.PEERS)
    text = report.header(m, "quick")
    assert m["cpu"] in text and m["kernel_path"] in text and "numpy" in text


def test_compare_flags_only_differences_beyond_the_noise(quick_run):
    same = report.compare(quick_run, copy.deepcopy(quick_run))
    assert same and all(row[5] == "within noise" for row in same)
    base = copy.deepcopy(quick_run)
    for w in base["results"].values():        # the rule, not this run's noise, is tested
        for r in w["engines"].values():
            if "median" in r:
                r["spread"] = 0.05
    slower = copy.deepcopy(base)
    slower["results"]["demo-step"]["engines"]["cgrad"]["median"] *= 2
    rows = report.compare(base, slower)
    flagged = [(label, engine) for label, engine, *_, verdict, _ in rows
               if verdict != "within noise"]
    assert flagged == [(base["results"]["demo-step"]["label"], "cgrad")]
    assert "**slower**" in report.compare_table(base, slower, ("A", "B"))
    noisy = copy.deepcopy(slower)          # runs this noisy cannot show a 2x change
    for run in (base, noisy):
        run["results"]["demo-step"]["engines"]["cgrad"]["spread"] = 0.6
    assert all(row[5] == "within noise" for row in report.compare(base, noisy)
               if row[1] == "cgrad" and "demo step" in row[0])


def test_compare_from_the_command_line(quick_run, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    base = copy.deepcopy(quick_run)
    for w in base["results"].values():
        for r in w["engines"].values():
            if "median" in r:
                r["spread"] = 0.05
    a.write_text(json.dumps(base))
    faster = copy.deepcopy(base)
    faster["results"]["build"]["engines"]["cgrad"]["median"] /= 3
    b.write_text(json.dumps(faster))
    out = subprocess.run([sys.executable, "-m", "cgrad", "bench", "--compare", str(a), str(b)],
                         check=True, capture_output=True, text=True).stdout
    assert "**faster**" in out and out.count("**") == 2


def test_unknown_names_are_refused():
    with pytest.raises(SystemExit, match="unknown workload"):
        report.run("quick", only=["nope"])
    with pytest.raises(SystemExit, match="unknown engine"):
        report.run("quick", engines=["nope"])


def test_the_parallel_bench_runs_two_loops_both_ways():
    from cgrad.cli import parallel_bench
    r = parallel_bench.measure("quick", rounds=1)
    assert r["serial_s"] > 0 and r["threads_s"] > 0 and r["speedup"] > 0
    assert "MLP(64, [128, 10]) b32" in r["workload"]
    assert r["workload"] in parallel_bench.table(r)


def test_the_microgpt_table_has_every_variant_and_its_ratios():
    """Measured in a child process: JAX's threads would make this process's later
    fork() tests unsafe."""
    from cgrad.cli import microgpt_bench
    code = ("import json; from cgrad.cli import microgpt_bench; print(json.dumps("
            "microgpt_bench.measure(n_embd=8, block_size=8, steps=2, rounds=1)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    run = json.loads(out.strip().splitlines()[-1])
    assert list(run["variants"]) == list(microgpt_bench.variants())
    assert all(r["wall"] > 0 and r["cpu"] > 0 for r in run["variants"].values())
    assert run["setup"]["cgrad.gpt replayed"]["lengths"] >= 1
    assert set(run["setup"]) <= {"cgrad.gpt replayed", "JAX jit (the same model)"}
    text = microgpt_bench.table([run])
    rows = [line for line in text.splitlines() if line.startswith("| n_embd 8")]
    assert len(rows) == len(run["variants"]) + len(run["setup"])   # and the setups
    base = run["variants"]["microgpt on its own Value"]["wall"]
    replayed = run["variants"]["cgrad.gpt replayed"]["wall"]
    row = next(r for r in rows if "| cgrad.gpt replayed |" in r)
    assert f"| {base / replayed:.3g}x |" in row
    torch_run = run["variants"].get("PyTorch (the same model)")
    assert (f"| {torch_run['wall'] / replayed:.3g}x |" if torch_run else "| - |") in row
    first = run["variants"]["cgrad.gpt replayed"]["first_run_wall"]
    assert first > 0 and row.endswith(f"| {first * 1e3:.3g} | - |")   # the first run's steps
    run["variants"]["cgrad.gpt replayed"]["memory"] = 12.4e6                # and memory
    assert "| 12 |" in next(r for r in microgpt_bench.table([run]).splitlines()
                            if "| cgrad.gpt replayed |" in r)


def test_microgpt_memory_is_the_growth_of_a_fresh_process():
    from cgrad.cli import microgpt_bench
    chosen = ("microgpt on cgrad.Value", "cgrad.gpt replayed")
    grown = microgpt_bench.memory(8, 8, 2, chosen=chosen)
    assert set(grown) == set(chosen)
    assert all(isinstance(n, int) and n > 0 for n in grown.values())
