"""One owner for every number: while a replayed Graph holds newer numbers than its
nodes, every way of reading or writing a number (attributes, eager ops and backward,
optimizers, closures run by the sweep, other threads, interrupts, fork) sees and keeps
the right ones.

The oracle is the same program without replay: every Graph step rebuilt eagerly.
"""
import os
import random
import signal
import threading
import time

import numpy as np
import pytest

import cgrad
from cgrad import Value, losses, nn
from cgrad.optim import SGD, Adam


def model_pair(sizes, seed):
    """Two models with the same weights: one trained through Graphs, one eagerly."""
    random.seed(seed)
    a = nn.MLP(*sizes)
    random.seed(seed)
    b = nn.MLP(*sizes)
    return a, b


def loss_of(model, X, Y):
    return losses.softmax_cross_entropy([model(list(x)) for x in X], list(Y))


def recorded(model, batch, nin, classes):
    xs, ys = cgrad.inputs(batch, nin), cgrad.inputs(batch, classes)
    return cgrad.Graph(loss_of(model, xs, ys), inputs=(xs, ys))


def batch(rng, n, nin, classes):
    return rng.uniform(-1, 1, (n, nin)), np.eye(classes)[rng.randint(0, classes, n)]


def eager_step(model, opt, X, Y):
    """What Graph.step does, rebuilt: zero_grad, the loss, backward, the update."""
    opt.zero_grad()
    loss = loss_of(model, X, Y)
    loss.backward()
    opt.step()
    return loss.data


def numbers(model):
    return [(p.data, p.grad) for p in model.parameters()]


class World:
    """One side of the comparison: replay=True runs Graphs, else rebuilds each step."""

    def __init__(self, replay, seed):
        self.replay = replay
        self.model, _ = model_pair((3, [4, 2]), seed)
        self.other, _ = model_pair((2, [3, 2]), seed + 1)    # shares nothing
        self.sgd = SGD(self.model.parameters(), lr=0.05, momentum=0.5)
        self.adam = Adam(self.other.parameters(), lr=0.01)
        self.shared = Value(0.3)      # a parameter of g_shared, and a stray input of g_stray
        self.graph1 = loss_of(self.model, np.zeros((3, 3)), np.zeros((3, 2)))
        self.last_loss1 = self.graph1.data
        if replay:
            self.g1 = recorded(self.model, 3, 3, 2)
            self.g2 = recorded(self.model, 2, 3, 2)      # the same parameters
            xs = cgrad.inputs(2, 3)                      # and a prediction over them
            self.g_predict = cgrad.Graph(inputs=xs, outputs=[self.model(x) for x in xs])
            self.g3 = recorded(self.other, 2, 2, 2)
            (x,) = cgrad.inputs(1)
            self.g_shared = cgrad.Graph(self.shared * x, inputs=[x])
            (y,) = cgrad.inputs(1)
            self.g_stray = cgrad.Graph(y * 2.0, inputs=[y, self.shared])  # not read

    # each action: the replayed way, or the rebuilt way, with the same numbers
    def step1(self, X, Y):
        if self.replay:
            self.last_loss1 = self.g1.step(X, Y, optimizer=self.sgd)
            self.graph1 = self.g1.loss
        else:
            self.sgd.zero_grad()
            self.graph1 = loss_of(self.model, X, Y)
            self.graph1.backward()
            self.sgd.step()
            self.last_loss1 = self.graph1.data
        return self.last_loss1

    def step2(self, X, Y):
        """g2 shares g1's parameters and optimizer: a step after g1's takes them from
        g1's plan directly, and g1's other numbers reach their nodes."""
        if self.replay:
            return self.g2.step(X, Y, optimizer=self.sgd)
        return eager_step(self.model, self.sgd, X, Y)

    def predict(self, X):
        """A third graph over the model's parameters, no optimizer: it reads them from
        whichever graph holds them (handed back to their nodes)."""
        if self.replay:
            return self.g_predict.forward(X).tolist()
        return [[o.data for o in self.model(list(x))] for x in X]

    def loss1(self):
        """g1's loss node, as g1's last run left it (forward or step)."""
        if self.replay:
            return self.g1.loss.data
        return self.last_loss1

    def forward_backward2(self, X, Y):
        if self.replay:
            loss = self.g2.forward(X, Y)
            self.g2.backward()
            return loss
        loss = loss_of(self.model, X, Y)
        loss.backward()
        return loss.data

    def gradient_of_loss1(self):
        """cgrad.grad over g1's graph (its nodes as g1's last run left them, the
        parameters as they are now), every grad kept."""
        return cgrad.grad(self.graph1, self.model.parameters())

    def step3(self, X, Y):
        if self.replay:
            return self.g3.step(X, Y, optimizer=self.adam)
        return eager_step(self.other, self.adam, X, Y)

    def shared_and_stray(self, a, b):
        if self.replay:
            out = self.g_shared.forward([a])
            self.g_stray.forward([1.0, b])     # writes the stray leaf's node
            return out
        out = self.shared.data * a
        self.shared.data = b
        return out

    def closure_runs_a_graph(self, X, Y):
        """A custom node whose _backward runs a step over the same model mid-sweep."""
        params = self.model.parameters()
        e = params[0] * 3.0
        c = Value(e.data, (e,), 'custom')

        def _backward():
            e.grad += c.grad
            self.forward_backward2(X, Y)
        c._backward = _backward
        loss = c + params[0] * 5.0 + params[1] * params[0]
        loss.backward()
        return loss.data

    def eager_backward(self):
        params = self.model.parameters()
        loss = cgrad.sum(p * p for p in params[:6])
        loss.backward()
        return loss.data

    def write(self, i, d, g):
        p = self.model.parameters()[i]
        p.data += d
        p.grad = g
        return p.data

    def in_a_thread(self, X, Y):
        out = []
        t = threading.Thread(target=lambda: out.append(self.step1(X, Y)))
        t.start()
        t.join()
        return out[0]

    def read(self):
        return numbers(self.model) + numbers(self.other) + [(self.shared.data,
                                                              self.shared.grad)]

    def read_one(self, i):
        """One parameter's numbers, as a training loop logs them (one node synced)."""
        params = self.model.parameters() + self.other.parameters()
        p = params[i % len(params)]
        return p.data, p.grad, repr(p), p < 0.0, 0.0 >= p


ACTIONS = ["step1", "step2", "loss1", "gradient_of_loss1", "predict", "forward_backward2", "step3",
           "shared_and_stray", "closure_runs_a_graph", "eager_backward", "write",
           "in_a_thread", "sgd_only", "read", "read_one", "read_one"]


@pytest.mark.parametrize("seed", range(8))
def test_a_random_program_gives_the_numbers_it_gives_without_replay(seed):
    replayed, rebuilt = World(True, seed), World(False, seed)
    rng_r, rng_e = np.random.RandomState(seed), np.random.RandomState(seed)
    chooser = random.Random(seed)
    for k in range(40):
        action = chooser.choice(ACTIONS)
        outs = []
        for world, rng in ((replayed, rng_r), (rebuilt, rng_e)):
            if action in ("step1", "step2", "forward_backward2", "closure_runs_a_graph",
                          "in_a_thread"):
                X, Y = batch(rng, 3 if action in ("step1", "in_a_thread") else 2, 3, 2)
                outs.append(getattr(world, action)(X, Y))
            elif action == "predict":
                outs.append(world.predict(rng.uniform(-1, 1, (2, 3))))
            elif action == "step3":
                outs.append(world.step3(*batch(rng, 2, 2, 2)))
            elif action == "shared_and_stray":
                outs.append(world.shared_and_stray(*rng.uniform(-1, 1, 2)))
            elif action == "write":
                outs.append(world.write(rng.randint(0, 26), *rng.uniform(-0.1, 0.1, 2)))
            elif action == "read_one":
                outs.append(world.read_one(rng.randint(0, 1000)))
            elif action == "sgd_only":
                world.sgd.step()
                outs.append(None)
            else:
                outs.append(getattr(world, action)())
        assert outs[0] == outs[1], f"action {k} ({action})"
    assert replayed.read() == rebuilt.read()


def test_eager_writes_while_the_batch_converts_are_kept():
    """numpy converting a batch (Fortran order, float32) may run other code: here the
    conversion itself writes a parameter, as another thread would while numpy copies."""
    model, _ = model_pair((3, [4, 2]), 0)
    graph = recorded(model, 2, 3, 2)
    p = model.parameters()[0]
    X, Y = batch(np.random.RandomState(0), 2, 3, 2)

    class Converting:
        def __array__(self, dtype=None, copy=None):
            p.data = 5.0          # the eager update made while numpy converts
            return np.asfortranarray(X.astype(np.float32))

    graph.forward(Converting(), Y)
    assert p.data == 5.0
    graph.forward(X, Y)
    assert p.data == 5.0


def test_a_stray_input_is_not_overwritten_by_another_graphs_copy():
    s = Value(0.3)
    (x,) = cgrad.inputs(1)
    reads_s = cgrad.Graph(s * x, inputs=[x])
    y = cgrad.inputs(1)[0]
    loads_s = cgrad.Graph(y * 2.0, inputs=[y, s])      # s: loaded, never read
    reads_s.forward([1.0])                             # holds s = 0.3 in its plan
    loads_s.forward([1.0, 7.0])
    assert s.data == 7.0
    assert reads_s.forward([2.0]) == 14.0


def test_a_closure_that_runs_a_graph_keeps_the_sweeps_gradients():
    w = Value(0.5)
    (x,) = cgrad.inputs(1)
    graph = cgrad.Graph((w * x) * (w * x), inputs=[x])
    graph.forward([2.0])
    graph.backward()                  # ran once: its plan has read the nodes
    w.grad = 0.0
    e = w * 3.0
    c = Value(e.data, (e,), 'custom')

    def _backward():
        e.grad += c.grad
        graph.forward([2.0])
        graph.backward()              # adds 2 * w * x**2 = 4.0 to w.grad
    c._backward = _backward
    (c + w * 5.0).backward()
    assert w.grad == 5.0 + 4.0 + 3.0


def test_an_interrupt_while_waiting_for_a_run_does_not_lose_its_numbers():
    model, twin = model_pair((3, [4, 2]), 1)
    graph = recorded(model, 2, 3, 2)
    X, Y = batch(np.random.RandomState(1), 2, 3, 2)
    eager_step(twin, SGD(twin.parameters(), lr=0.1), X, Y)
    graph.step(X, Y, optimizer=SGD(model.parameters(), lr=0.1))   # the plan is ahead

    from cgrad import _replay
    held, release = threading.Event(), threading.Event()

    def hold_the_lock():      # as a Graph run in another thread does
        with _replay.RUN_LOCK:
            held.set()
            release.wait(10)
    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    held.wait(10)
    main = threading.main_thread().ident     # a real SIGINT, to wake the lock's wait
    timer = threading.Timer(0.2, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            model.parameters()[0].data       # waits for the lock; interrupted there
            time.sleep(5)
    finally:
        release.set()
        holder.join()
        timer.cancel()
    assert numbers(model) == numbers(twin)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_fork_while_another_thread_runs_a_graph_does_not_hang_the_child():
    model, _ = model_pair((3, [4, 2]), 2)
    graph = recorded(model, 2, 3, 2)
    X, Y = batch(np.random.RandomState(2), 2, 3, 2)
    graph.step(X, Y, optimizer=SGD(model.parameters(), lr=0.1))   # the plan is ahead
    from cgrad import _replay
    held, release = threading.Event(), threading.Event()

    def hold_the_lock():
        with _replay.RUN_LOCK:
            held.set()
            release.wait(10)
    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    held.wait(10)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # 3.12: fork with threads
        pid = os.fork()
    if pid == 0:                                   # the child: no thread holds the lock
        signal.alarm(10)
        try:
            p = model.parameters()[0]
            ok = isinstance(p.data, float) and (Value(1.0) + p).data == 1.0 + p.data
            graph.step(X, Y, optimizer=SGD(model.parameters(), lr=0.1))
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    release.set()
    holder.join()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_independent_graphs_train_in_two_threads_as_they_do_serially():
    """Graphs that share no node run side by side; each trains exactly as alone."""
    def train(model, graph, seed, steps=30):
        opt = Adam(model.parameters(), lr=0.01)
        rng = np.random.RandomState(seed)
        for _ in range(steps):
            graph.step(*batch(rng, 16, 8, 3), optimizer=opt)

    serial, parallel = [], []
    for seed in (0, 1):
        model, _ = model_pair((8, [32, 3]), seed)
        train(model, recorded(model, 16, 8, 3), seed)
        serial.append(numbers(model))
    models = [model_pair((8, [32, 3]), seed)[0] for seed in (0, 1)]
    graphs = [recorded(m, 16, 8, 3) for m in models]
    threads = [threading.Thread(target=train, args=(m, g, seed))
               for seed, (m, g) in enumerate(zip(models, graphs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    parallel = [numbers(m) for m in models]
    assert parallel == serial


def test_graphs_sharing_parameters_in_two_threads_keep_every_update():
    """Two Graphs over one model, stepped from two threads: they wait for each other,
    and the parameters are those of the same steps run one after another in the order
    they ran (logged by the optimizer's step, which runs inside the Graph's step)."""
    model, twin = model_pair((8, [64, 3]), 4)
    g1, g2 = recorded(model, 32, 8, 3), recorded(model, 32, 8, 3)
    rng = np.random.RandomState(4)
    batches = [batch(rng, 32, 8, 3) for _ in range(20)]
    order = []

    class Logged:               # not cgrad's SGD: the update runs on the nodes
        def __init__(self):
            self.opt = SGD(model.parameters(), lr=0.05)
            self.current = None

        def zero_grad(self):
            self.opt.zero_grad()

        def step(self):
            order.append(self.current)
            self.opt.step()

    def run(graph, indices):
        opt = Logged()
        for i in indices:
            opt.current = i
            graph.step(*batches[i], optimizer=opt)
    t1 = threading.Thread(target=run, args=(g1, range(0, 20, 2)))
    t2 = threading.Thread(target=run, args=(g2, range(1, 20, 2)))
    t1.start(); t2.start(); t1.join(); t2.join()
    assert sorted(order) == list(range(20))
    opt = SGD(twin.parameters(), lr=0.05)
    for i in order:
        eager_step(twin, opt, *batches[i])
    assert numbers(model) == numbers(twin)


def test_graphs_of_one_optimizer_in_two_threads_keep_every_update():
    """Two Graphs over one model stepped from two threads with one cgrad SGD, whose
    update runs in the plans: each step takes the parameters from the other graph's
    plan.  The order the steps ran in is read back from their losses (each is the loss
    at the parameters the steps before it left); the parameters are those of the same
    steps run eagerly in that order."""
    model, twin = model_pair((8, [64, 3]), 6)
    g1, g2 = recorded(model, 16, 8, 3), recorded(model, 12, 8, 3)
    rng = np.random.RandomState(6)
    work = {g1: [batch(rng, 16, 8, 3) for _ in range(15)],
            g2: [batch(rng, 12, 8, 3) for _ in range(15)]}
    opt = SGD(model.parameters(), lr=0.05, momentum=0.5)
    got = {g1: [], g2: []}

    def run(graph):
        for X, Y in work[graph]:
            got[graph].append(graph.step(X, Y, optimizer=opt))
    threads = [threading.Thread(target=run, args=(g,)) for g in (g1, g2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    twin_opt = SGD(twin.parameters(), lr=0.05, momentum=0.5)
    done = {g1: 0, g2: 0}
    for _ in range(30):       # the next step is whichever graph's loss matches
        for graph in (g1, g2):
            k = done[graph]
            if k < 15 and loss_of(twin, *work[graph][k]).data == got[graph][k]:
                eager_step(twin, twin_opt, *work[graph][k])
                done[graph] += 1
                break
        else:
            pytest.fail(f"no step's loss matches after {done[g1]} + {done[g2]} steps")
    assert numbers(model) == numbers(twin)


def graph_nodes(root):
    """Every node root depends on, kids first (read without syncing: _children does
    not)."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        v, done = stack.pop()
        if done:
            order.append(v)
        elif v not in seen:
            seen.add(v)
            stack.append((v, True))
            stack.extend((k, False) for k in reversed(v._children))
    return order


def test_reading_one_node_gives_what_handing_back_every_number_gives():
    """Python reading one node after a step gets that node's numbers alone from the
    plan; an eager op hands every number back.  Both must show the same: parameters
    (data and grad), input leaves (their grads computed on demand), interior nodes, the
    loss, and an output the loss does not read (whose grad no step writes)."""
    rng = np.random.RandomState(3)
    X, Y = batch(rng, 6, 5, 3)
    model, _ = model_pair((5, [7, 3]), 4)
    xs, ys = cgrad.inputs(6, 5), cgrad.inputs(6, 3)
    loss = loss_of(model, xs, ys)
    aside = model.parameters()[0] * 2.0
    aside.grad = 5.0
    graph = cgrad.Graph(loss, inputs=(xs, ys), outputs=[aside], threads=1)
    opt = Adam(model.parameters(), lr=0.01)
    for _ in range(2):
        graph.step(X, Y, optimizer=opt)
    assert graph._deferred_input_layers() == 1
    nodes = graph_nodes(loss) + [aside]
    assert len(nodes) > 200
    picks = [nodes.index(xs[0][0]), len(nodes) - 1, len(nodes) - 2] + \
        list(rng.choice(len(nodes), 25, replace=False))   # 56 reads: under the budget (64)
    one_by_one = {i: (nodes[i].data, nodes[i].grad) for i in picks}   # within the budget
    assert one_by_one[picks[0]][1] != 0          # an input's grad, computed on demand
    loss * 1.0                          # an eager op: every number handed back
    for i in picks:
        assert one_by_one[i] == (nodes[i].data, nodes[i].grad), f"node {i}: {nodes[i]._op}"
    assert aside.grad == 5.0


def test_reading_every_node_one_by_one_after_a_step_reads_what_the_eager_step_gives():
    """Past the budget of single reads, the rest come from handing every number back."""
    rng = np.random.RandomState(5)
    X, Y = batch(rng, 6, 5, 3)
    replayed, rebuilt = model_pair((5, [7, 3]), 6)
    xs, ys = cgrad.inputs(6, 5), cgrad.inputs(6, 3)
    loss = loss_of(replayed, xs, ys)
    graph = cgrad.Graph(loss, inputs=(xs, ys), threads=1)
    opts = [SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (replayed, rebuilt)]
    for _ in range(3):
        stepped = graph.step(X, Y, optimizer=opts[0])
        read = loss.data, numbers(replayed)   # one node, then 132 reads: past the budget
        eager_loss = eager_step(rebuilt, opts[1], X, Y)   # (an eager op syncs every node)
        assert read == (stepped, numbers(rebuilt)) and stepped == eager_loss


def test_a_step_taking_parameters_from_another_graph_leaves_it_readable():
    """Two Graphs of one model and optimizer, stepped in turn: the second takes the
    parameters from the first's plan, the first's other numbers (its loss, its input
    gradients) reach their nodes; both match the eager steps."""
    replayed, rebuilt = model_pair((3, [4, 2]), 5)
    opt, twin_opt = Adam(replayed.parameters(), lr=0.01), Adam(rebuilt.parameters(), lr=0.01)
    xs1, ys1 = cgrad.inputs(3, 3), cgrad.inputs(3, 2)
    g1 = cgrad.Graph(loss_of(replayed, xs1, ys1), inputs=(xs1, ys1))
    g2 = recorded(replayed, 2, 3, 2)
    rng = np.random.RandomState(1)
    for k in range(3):
        X1, Y1 = batch(rng, 3, 3, 2)
        X2, Y2 = batch(rng, 2, 3, 2)
        got1 = g1.step(X1, Y1, optimizer=opt)
        got2 = g2.step(X2, Y2, optimizer=opt)        # g1's parameters, plan to plan
        loss1, grads1 = g1.loss.data, [v.grad for x in xs1 for v in x]
        twin_opt.zero_grad()                         # eager work flushes every graph:
        rows = [[Value(v) for v in x] for x in X1]   # only after both steps
        want1 = loss_of(rebuilt, rows, Y1)
        want1.backward()
        twin_opt.step()
        want2 = eager_step(rebuilt, twin_opt, X2, Y2)
        assert (got1, got2) == (want1.data, want2)
        assert loss1 == want1.data                   # g1's numbers reached its nodes
        assert grads1 == [v.grad for x in rows for v in x]
    assert numbers(replayed) == numbers(rebuilt)


def test_a_graph_whose_parameters_went_back_to_their_nodes_reads_them_there():
    """g1 gives its parameters to g2 (plan to plan) and keeps its other numbers; a
    prediction over the same parameters takes them back from g2 to their nodes but
    needs nothing else of g1; g1's next step reads them from the nodes."""
    replayed, rebuilt = model_pair((3, [4, 2]), 8)
    opt, twin_opt = SGD(replayed.parameters(), lr=0.1), SGD(rebuilt.parameters(), lr=0.1)
    g1, g2 = recorded(replayed, 3, 3, 2), recorded(replayed, 2, 3, 2)
    xs = cgrad.inputs(2, 3)
    predict = cgrad.Graph(inputs=xs, outputs=[replayed(x) for x in xs])
    rng = np.random.RandomState(8)
    work = [batch(rng, 3, 3, 2), batch(rng, 2, 3, 2)] * 2 \
        + [rng.uniform(-1, 1, (2, 3)), batch(rng, 3, 3, 2)]
    got = [g1.step(*work[0], optimizer=opt), g2.step(*work[1], optimizer=opt),  # bound
           g1.step(*work[2], optimizer=opt), g2.step(*work[3], optimizer=opt),  # given
           predict.forward(work[4]).tolist(), g1.step(*work[5], optimizer=opt)]
    want = [eager_step(rebuilt, twin_opt, *w) for w in work[:4]] \
        + [[[o.data for o in rebuilt(list(x))] for x in work[4]],
           eager_step(rebuilt, twin_opt, *work[5])]
    assert got == want
    assert numbers(replayed) == numbers(rebuilt)


def test_graphs_of_one_optimizer_sharing_a_computed_node_keep_it_right():
    """Two graphs of one optimizer both compute a node built outside them (a penalty
    on a weight): a step of one after the other takes the parameters plan to plan, but
    the other's numbers for that node must reach it first, and a read of it after the
    second step gives the second graph's number."""
    replayed, rebuilt = model_pair((3, [4, 2]), 9)
    w, w_twin = replayed.parameters()[0], rebuilt.parameters()[0]
    penalty = w * w * 0.5            # one node, read by both graphs
    xs1, ys1 = cgrad.inputs(3, 3), cgrad.inputs(3, 2)
    xs2, ys2 = cgrad.inputs(2, 3), cgrad.inputs(2, 2)
    g1 = cgrad.Graph(loss_of(replayed, xs1, ys1) + penalty, inputs=(xs1, ys1))
    g2 = cgrad.Graph(loss_of(replayed, xs2, ys2) + penalty, inputs=(xs2, ys2))
    opt, twin_opt = SGD(replayed.parameters(), lr=0.1), SGD(rebuilt.parameters(), lr=0.1)
    rng = np.random.RandomState(9)
    for k in range(6):   # either graph last: a graph holding a stale copy, were it
        (X1, Y1), (X2, Y2) = batch(rng, 3, 3, 2), batch(rng, 2, 3, 2)   # left ahead,
        order = [(g1, X1, Y1), (g2, X2, Y2)][::1 if k % 4 < 2 else -1]  # would be met
        got = [g.step(X, Y, optimizer=opt) for g, X, Y in order]        # first by one
        read = penalty.data, penalty.grad                                # of the reads
        want = []
        for _, X, Y in order:
            twin_opt.zero_grad()
            twin_penalty = w_twin * w_twin * 0.5
            loss = loss_of(rebuilt, X, Y) + twin_penalty
            loss.backward()
            twin_opt.step()
            want.append(loss.data)
        assert got == want
        assert read == (twin_penalty.data, twin_penalty.grad)
    assert numbers(replayed) == numbers(rebuilt)


def test_a_step_that_takes_the_parameters_and_then_raises_leaves_zero_grads():
    """g2's step takes the parameters from g1's plan, then its forward overflows: as
    eager (zero_grad, then the loss raises), every parameter's grad reads 0 and its data
    is the last update's."""
    replayed, rebuilt = model_pair((3, [4, 2]), 10)
    opt, twin_opt = Adam(replayed.parameters(), lr=0.01), Adam(rebuilt.parameters(), lr=0.01)
    g1, g2 = recorded(replayed, 3, 3, 2), recorded(replayed, 2, 3, 2)
    rng = np.random.RandomState(10)
    for _ in range(2):              # both bound to the optimizer, g1 holding its numbers
        for g, n in ((g1, 3), (g2, 2), (g1, 3)):
            X, Y = batch(rng, n, 3, 2)
            assert g.step(X, Y, optimizer=opt) == eager_step(rebuilt, twin_opt, X, Y)
    X, Y = batch(rng, 2, 3, 2)
    X[0] = [1e308, -1e308, -1e308]  # a dot of the first layer overflows
    with pytest.raises(OverflowError):
        g2.step(X, Y, optimizer=opt)
    with pytest.raises(OverflowError):
        eager_step(rebuilt, twin_opt, X, Y)
    assert numbers(replayed) == numbers(rebuilt)
    assert all(grad == 0.0 for _, grad in numbers(replayed))
