"""The walkthrough "Adding an op" (notes/NOTES.md) is true: an op is one row of
csrc/ops.def, one method in _core.pyx, one stub line in _core.pyi and one row in
tests/op_rows.py.  Shown on sin: no other source file names it."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = [p for pattern in ("csrc/*.c", "csrc/*.h", "csrc/*.def", "src/cgrad/*.pyx",
                             "src/cgrad/*.pxd", "src/cgrad/*.pyi", "src/cgrad/**/*.py",
                             "tests/*.py")
           for p in ROOT.glob(pattern)]


def mentions(pattern):
    found = {}
    for path in SOURCES:
        if path.name == "test_adding_an_op.py":
            continue
        count = len(re.findall(pattern, path.read_text()))
        if count:
            found[str(path.relative_to(ROOT))] = count
    return found


@pytest.mark.skipif(not (ROOT / "csrc" / "ops.def").exists(), reason="needs the sources")
def test_sin_lives_in_four_places():
    assert mentions(r"\bCG_SIN\b") == {"src/cgrad/_core.pyx": 1}      # the method
    assert mentions(r"CG_UNARY\(SIN,") == {"csrc/ops.def": 1}         # the table row
    methods = {k: v for k, v in mentions(r"def sin\(self").items() if k.startswith("src/")}
    assert methods == {"src/cgrad/_core.pyx": 1, "src/cgrad/_core.pyi": 1}
    assert mentions(r'"sin": Row\(') == {"tests/op_rows.py": 1}       # the test row
    assert not (ROOT / "src/cgrad/_op_codes.pxi").exists() or \
        "CG_SIN" in (ROOT / "src/cgrad/_op_codes.pxi").read_text()    # generated


def test_comparisons_are_on_the_data_and_equality_is_identity():
    from cgrad import Value
    a, b = Value(1.0), Value(2.0)
    assert a < b and a <= 1.0 and b > 1.5 and b >= 2 and not (a > b)
    assert max([a, b, Value(0.5)]) is b                     # argmax code works
    assert a != Value(1.0) and a == a and len({a, Value(1.0)}) == 2
    assert hash(a) == object.__hash__(a)
    with pytest.raises(TypeError):
        a < "x"
