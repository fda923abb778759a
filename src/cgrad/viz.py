"""Graph pictures as in the seeds: trace() and draw_dot().  graphviz is optional."""


def trace(root):
    """All nodes and (child, parent) edges reachable from root, without recursion."""
    nodes, edges, stack = set(), set(), [root]
    while stack:
        v = stack.pop()
        if v in nodes:
            continue
        nodes.add(v)
        for child in v._prev:
            edges.add((child, v))
            stack.append(child)
    return nodes, edges


def dot_source(root, rankdir='LR'):
    """The graph in the DOT language: a record per Value, an oval per op."""
    nodes, edges = trace(root)
    lines = ['digraph {', f'  graph [rankdir={rankdir}]']
    for n in sorted(nodes, key=id):
        uid = str(id(n))
        label = "{ %s | data %.4f | grad %.4f }" % (_escape_record(n.label), n.data, n.grad)
        lines.append(f'  {uid} [label="{label}" shape=record]')
        if n._op:
            lines.append(f'  "{uid}{_escape(n._op)}" [label="{_escape(n._op)}"]')
            lines.append(f'  "{uid}{_escape(n._op)}" -> {uid}')
    for child, parent in sorted(edges, key=lambda e: (id(e[0]), id(e[1]))):
        lines.append(f'  {id(child)} -> "{id(parent)}{_escape(parent._op)}"')
    lines.append('}')
    return '\n'.join(lines)


def _escape(text):
    """text inside a quoted DOT string."""
    return str(text).replace('\\', '\\\\').replace('"', '\\"')


def _escape_record(text):
    """text inside a record label, where { } | < > are structure."""
    text = _escape(text)
    for ch in '{}|<>':
        text = text.replace(ch, '\\' + ch)
    return text


def draw_dot(root, format='svg', rankdir='LR'):
    """A graphviz.Digraph of the graph when the graphviz package is installed
    (pip install "cgrad[viz]"), else its DOT source as a string."""
    try:
        import graphviz
    except ImportError:
        return dot_source(root, rankdir)
    return graphviz.Source(dot_source(root, rankdir), format=format)
