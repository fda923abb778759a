"""Deep graphs build, differentiate and free; dropped graphs give their memory back."""
import copy
import gc
import math
import os
import pickle
import sys

import pytest

from cgrad import Value


def rss_bytes():
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_million_node_chain_builds_differentiates_and_frees():
    x = Value(0.5)
    y = x
    for _ in range(1_000_000):
        y = y + 1
    y.backward()
    assert y.data == 1_000_000.5 and x.grad == 1.0
    refs = sys.getrefcount(x)
    del y  # must not recurse in the deallocator (a recursive one crashes here)
    assert sys.getrefcount(x) == refs - 1   # the whole chain, and its hold on x, is gone
    assert x.data == 0.5


def test_deep_multiplicative_chain():
    x = Value(1.0)
    y = x
    for _ in range(200_000):
        y = y * 1.0 + x * 0.0
    y.backward()
    assert x.grad == 1.0


def test_deep_chain_through_every_unary_op():
    x = Value(0.3)
    y = x
    for _ in range(100_000):
        y = y.exp().log().relu()
    y = y.tanh().sigmoid()
    y.backward()
    t = math.tanh(0.3)
    s = 1 / (1 + math.exp(-t))
    assert math.isclose(x.grad, s * (1 - s) * (1 - t * t), rel_tol=1e-9)


def chain(x, depth):
    y = x
    for i in range(depth):
        y = (y * 0.999 + x).tanh() if i % 2 else y + 0.5
    return y


@pytest.mark.parametrize("clone", [lambda v: pickle.loads(pickle.dumps(v)), copy.deepcopy],
                         ids=["pickle", "deepcopy"])
def test_a_deep_graph_pickles_and_deep_copies(clone):
    """The oracle: the same graph rebuilt node by node, differentiated eagerly."""
    x = Value(0.25)
    y = chain(x, 100_000)                      # far past Python's recursion limit
    copied = clone([y, x])
    assert copied[0].data == y.data and copied[1].data == 0.25
    copied[0].backward()
    fresh = Value(0.25)
    chain(fresh, 100_000).backward()
    assert copied[1].grad == fresh.grad and x.grad == 0.0
    again = clone(y)                           # the marks of the first pickle are gone
    assert again.data == y.data


def test_pickling_a_graph_keeps_shared_nodes_shared():
    a = Value(2.0)
    h = a * a
    loss = h + h.tanh() * h
    loss2, h2, a2 = pickle.loads(pickle.dumps([loss, h, a]))
    assert h2 in loss2._prev and a2 in h2._prev
    loss2.backward()
    loss.backward()
    assert a2.grad == a.grad and h2.grad == h.grad


def test_a_pickle_that_fails_half_way_leaves_the_graph_picklable():
    x = Value(1.5)
    y = chain(x, 2_000)
    middle = y
    for _ in range(500):
        middle = next(v for v in middle._prev if v._prev)
    middle.lock = __import__("threading").Lock()      # not picklable
    with pytest.raises(TypeError):
        pickle.dumps(y)
    del middle.lock
    assert pickle.loads(pickle.dumps(y)).data == y.data
    shallow = copy.copy(y)                           # a new node over the same kids
    assert shallow is not y and shallow._prev == y._prev


def test_dropping_part_of_a_graph_keeps_the_rest_alive():
    a = Value(2.0)
    b = a * 3
    c = b + 1
    del a, b
    gc.collect()
    (mul,) = [p for p in c._prev if p._op == '*']
    assert {p.data for p in mul._prev} == {2.0, 3.0}


def build_and_drop(n):
    for i in range(n):
        a, b = Value(float(i % 7) + 1), Value(2.0)
        out = ((a * b + a).tanh() - b / a.exp()) ** 2
        out.backward()


# AddressSanitizer keeps freed memory in quarantine: RSS says nothing under it.
measures_rss = pytest.mark.skipif(
    not os.path.exists("/proc/self/statm") or os.environ.get("CGRAD_SANITIZE") == "1",
    reason="needs /proc, and a build without AddressSanitizer")


@measures_rss
def test_rss_is_flat_over_100k_dropped_graphs():
    build_and_drop(20_000)  # warm up free lists and allocator arenas
    before = rss_bytes()
    build_and_drop(100_000)
    grown = rss_bytes() - before
    # a leaked graph of this shape is ~1 KB: 100k of them would be ~100 MB
    assert grown < 4 * 1024 * 1024, f"RSS grew by {grown} bytes"


@measures_rss
def test_rss_returns_after_a_large_graph_is_dropped():
    before = rss_bytes()
    x = Value(1.0)
    y = x
    for _ in range(500_000):
        y = y * 1.0
    y.backward()
    peak = rss_bytes()
    del y
    gc.collect()
    after = rss_bytes()
    assert peak - before > 30 * 1024 * 1024  # the graph really was large
    assert after - before < (peak - before) / 2


def test_fused_nodes_release_every_reference_they_take():
    import sys
    from cgrad import dot, logsumexp, sum as vsum
    ws, xs, b = [Value(0.5), Value(-1.0), Value(2.0)], [Value(1.0), Value(3.0), Value(-2.0)], Value(0.1)
    everything = ws + xs + [b]
    before = [sys.getrefcount(v) for v in everything]
    for _ in range(100):
        out = dot(ws, xs, b) + dot(ws, xs) + dot(ws[:1], xs[:1]) + dot([], [], b)
        out = out + vsum(ws) + logsumexp(xs)
        out.backward()
        del out
    with pytest.raises(ValueError):
        dot(ws, xs[:2], b)
    assert [sys.getrefcount(v) for v in everything] == before
