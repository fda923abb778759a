"""The README's example runs and prints what its comments say."""
import contextlib
import io
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_example_prints_its_commented_results():
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    expected = re.findall(r"print\(.*?\)\s+# (\S+)", block)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md", "exec"), {})
    assert out.getvalue().split() == expected and len(expected) == 3


def test_readme_replay_example_is_examples_digits_and_reaches_95_percent():
    pytest.importorskip("sklearn")
    text = README.read_text()
    section = text[text.index("## Train larger MLPs"):]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    example = (README.parent / "examples" / "digits.py").read_text()
    assert example.endswith(block)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md", "exec"), {})
    assert float(out.getvalue().split()[-1].rstrip("%")) >= 95.0


@contextlib.contextmanager
def classes_restored():
    """A block may add methods to Value (as the README shows): take them away after."""
    from cgrad import engine, nn
    classes = [engine.Value] + [c for c in vars(nn).values() if isinstance(c, type)]
    before = [dict(vars(c)) for c in classes]
    try:
        yield
    finally:
        for c, attributes in zip(classes, before):
            for name in set(vars(c)) - set(attributes):
                delattr(c, name)


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_every_readme_python_block_runs_as_pasted(index):
    block = python_blocks()[index]
    if "load_digits" in block:
        pytest.importorskip("sklearn")
    if "cgrad.sweep(" in block:
        pytest.importorskip("joblib")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), classes_restored():
        exec(compile(block, f"README.md block {index}", "exec"), {})
    prints = re.findall(r"^print\(.*\)(?:\s+# (.*))?$", block, re.M)
    if prints and all(prints):       # every print says what it prints: hold it to that
        assert out.getvalue().splitlines() == prints


def test_the_engine_imports_without_numpy():
    import subprocess
    import sys
    code = ("import sys; import cgrad.engine; v = cgrad.engine.Value(2.0) * 3; "
            "v.backward(); print(v.data, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["6.0", "False"]


def test_the_version_is_written_once():
    import cgrad
    from importlib.metadata import version
    assert cgrad.__version__ == version("cgrad")
