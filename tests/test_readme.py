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
