import math

import pytest


@pytest.fixture(autouse=True)
def split_every_kernel():
    """With threads=N, every layer kernel of the tests' small models is split (by
    default only kernels of 3M multiply-adds or more are: parts of 1.5M), so that the parallel paths
    run; the bits do not depend on it."""
    try:
        from cgrad._replay import _set_work_per_part
    except ImportError:      # numpy missing: no replay tests run
        yield
        return
    old = _set_work_per_part(1)
    yield
    _set_work_per_part(old)


def close(x, y, rel=1e-9, abs_=1e-12):
    return math.isclose(x, y, rel_tol=rel, abs_tol=abs_)


def central_difference(f, xs, i, h=1e-6):
    """d f / d xs[i] by central differences, f taking a list of floats."""
    up, down = list(xs), list(xs)
    up[i] += h
    down[i] -= h
    return (f(up) - f(down)) / (2 * h)


def pytest_terminal_summary(terminalreporter):
    """Say which tests skipped for want of an optional oracle, and how to run them: a
    bare `python -m pytest` on a machine without PyTorch skips every PyTorch-oracle
    test, and a passing run must not hide that."""
    from collections import Counter
    reasons = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
        for module, install in (("torch", "pip install torch==2.13.0"),
                                ("sklearn", "pip install scikit-learn"),
                                ("micrograd", 'pip install "micrograd==0.1.0"'),
                                ("graphviz", "pip install graphviz")):
            if f"'{module}'" in reason or f"No module named {module}" in reason \
                    or f"could not import '{module}'" in reason:
                reasons[install] += 1
    if reasons:
        terminalreporter.section("skipped for want of an optional oracle")
        for install, count in reasons.items():
            terminalreporter.write_line(f"{count} skipped (a whole test file counts once): "
                                        f"{install}, then run again to include them")
