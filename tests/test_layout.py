"""Where Values sit in memory (csrc/slab.c): a graph built in a loop sits in creation
order whatever was freed before, and freed memory goes back to the system beyond a
bounded cache.  Skipped in builds without slabs (the sanitizer's)."""
import random

import pytest

from cgrad._core import _memory_layout, _trim_slabs
from cgrad.engine import Value


def slabs_in_use():
    probe = Value(1.0)        # an exact Value: it comes from a slab if this build has them
    return probe is not None and _memory_layout()[1] > 0


SLABS = slabs_in_use()
pytestmark = pytest.mark.skipif(not SLABS, reason="this build allocates Values without slabs")


def ascending_share(values):
    """The share of consecutive Values that sit at increasing addresses."""
    ids = [id(v) for v in values]
    return sum(b > a for a, b in zip(ids, ids[1:])) / (len(ids) - 1)


def build(a, b, n):
    return [a * b for _ in range(n)]


def test_a_rebuilt_graph_sits_in_creation_order():
    a, b = Value(1.5), Value(2.0)
    for _ in range(5):                     # an eager training loop: build, drop, rebuild
        nodes = build(a, b, 20_000)
        assert ascending_share(nodes) > 0.99
        del nodes


def adjacent_share(values):
    """The share of consecutive Values that sit right after each other in memory."""
    ids = [id(v) for v in values]
    size = Value.__basicsize__ + 16                   # the object and its GC header
    return sum(b - a == size for a, b in zip(ids, ids[1:])) / (len(ids) - 1)


def test_a_graph_built_on_a_fragmented_heap_is_not_scattered_among_survivors():
    a, b = Value(1.5), Value(2.0)
    made = build(a, b, 40_000)
    rng = random.Random(0)
    order = list(range(len(made)))
    rng.shuffle(order)
    kept = [made[i] for i in order[:20_000]]   # half survive, freed in random order
    for i in order[20_000:]:
        made[i] = None
    del made
    nodes = build(a, b, 20_000)
    # slabs about half live are not reused, so the graph sits node after node (filling
    # their holes, lowest address first, would leave it about half adjacent)
    assert ascending_share(nodes) > 0.99
    assert adjacent_share(nodes) > 0.95
    del kept


def test_memory_of_a_freed_graph_goes_back_beyond_the_cache():
    _trim_slabs()
    held_before = _memory_layout()[1]
    a, b = Value(1.5), Value(2.0)
    nodes = build(a, b, 1_000_000)             # ~96 MB
    held = _memory_layout()[1]
    assert held - held_before >= 96 * 1_000_000 * 0.99
    del nodes
    cached = _memory_layout()[1] - held_before
    assert cached <= 33 * 2 ** 20              # at most the 32 MiB cache of empty slabs kept
    _trim_slabs()
    assert _memory_layout()[1] - held_before <= 2 ** 16


def memory_after_rebuilds(keep_every):
    """A 50,000-node graph built and dropped ten times, every keep_every-th node of each
    living on: the slab memory held beyond what was held before, and the survivors."""
    _trim_slabs()
    baseline = _memory_layout()[1]
    a, b = Value(1.5), Value(2.0)
    survivors = []
    for _ in range(10):
        nodes = build(a, b, 50_000)
        survivors.extend(nodes[::keep_every])
        del nodes
    return _memory_layout()[1] - baseline, survivors


def test_a_long_lived_node_does_not_pin_a_graphs_worth_of_memory():
    """A slab is reused once at most a quarter live: one survivor per slab costs no
    more than twice the live memory, rebuilding many times."""
    held, survivors = memory_after_rebuilds(500)     # one in 500 lives on
    live_bytes = (len(survivors) + 50_000) * 96
    assert held <= 2 * live_bytes + 33 * 2 ** 20


def test_slabs_a_third_live_cost_at_most_four_times_the_live_memory():
    """Slabs more than a quarter live are not refilled (a graph there would sit among
    the survivors), so survivors at a third of each graph leave memory growing with
    them, but never past four times what is live."""
    held, survivors = memory_after_rebuilds(3)
    live_bytes = len(survivors) * 96
    assert held <= 4 * live_bytes + 33 * 2 ** 20
    assert held >= live_bytes
