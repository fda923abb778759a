import math


def close(x, y, rel=1e-9, abs_=1e-12):
    return math.isclose(x, y, rel_tol=rel, abs_tol=abs_)


def central_difference(f, xs, i, h=1e-6):
    """d f / d xs[i] by central differences, f taking a list of floats."""
    up, down = list(xs), list(xs)
    up[i] += h
    down[i] -= h
    return (f(up) - f(down)) / (2 * h)
