"""mypy knows cgrad's types: a typed user script passes mypy --strict (it fails when the
stubs or annotations are missing: untyped calls and Any returns are errors there)."""
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).parent / "typing" / "user_script.py"


def test_a_typed_user_script_passes_mypy_strict(tmp_path):
    pytest.importorskip("mypy")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         "--cache-dir", str(tmp_path), str(SCRIPT)],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
