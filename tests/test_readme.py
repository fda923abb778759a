"""The README's example runs and prints what its comments say."""
import contextlib
import io
import pathlib
import re

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_example_prints_its_commented_results():
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    expected = re.findall(r"print\(.*?\)\s+# (\S+)", block)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md", "exec"), {})
    assert out.getvalue().split() == expected and len(expected) == 3
