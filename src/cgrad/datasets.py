"""Small datasets: two moons in numpy, and scikit-learn's bundled digits when installed."""
import numpy as np


def make_moons(n_samples=100, noise=None, seed=None):
    """Two interleaving half circles, as scikit-learn's make_moons (same draws for the
    same seed; seed=None draws from numpy's global generator, as micrograd's demo does).
    Returns X of shape (n_samples, 2) and labels y in {0, 1}."""
    if int(n_samples) != n_samples or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
    n_out = n_samples // 2
    n_in = n_samples - n_out
    rng = np.random.mtrand._rand if seed is None else np.random.RandomState(seed)
    t_out, t_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n_in)
    X = np.vstack([np.append(np.cos(t_out), 1 - np.cos(t_in)),
                   np.append(np.sin(t_out), 1 - np.sin(t_in) - 0.5)]).T
    y = np.hstack([np.zeros(n_out, dtype=np.intp), np.ones(n_in, dtype=np.intp)])
    order = np.arange(n_samples)
    rng.shuffle(order)
    X, y = X[order], y[order]
    if noise is not None:
        X += rng.normal(scale=noise, size=X.shape)
    return X, y


def _digits():
    """(pixels 0-16, labels) of scikit-learn's digits: read from the file it ships
    (importing scikit-learn takes 0.7 s, reading the file 0.02: a process of a sweep pays
    it once per worker), or through scikit-learn where that file is not found."""
    import importlib.util
    import os
    spec = importlib.util.find_spec("sklearn")     # finds it without importing it
    if spec is None:
        raise ImportError("the digits data ships with scikit-learn: "
                          "pip install scikit-learn (or cgrad[data])")
    for folder in spec.submodule_search_locations or []:
        path = os.path.join(folder, "datasets", "data", "digits.csv.gz")
        if os.path.exists(path):
            table = np.loadtxt(path, delimiter=",")
            return table[:, :-1], table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits as sklearn_digits
    digits = sklearn_digits()
    return digits.data, digits.target


def load_digits(test_fraction=0.2, seed=0):
    """scikit-learn's 1,797 8x8 handwritten digits, pixels scaled to [0, 1], split into
    (X_train, y_train, X_test, y_test).  Needs scikit-learn (pip install "cgrad[data]")."""
    pixels, y = _digits()
    X = pixels / 16.0
    order = np.random.RandomState(seed).permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return X[train], y[train], X[test], y[test]


_ONSETS = ["", "b", "br", "ch", "d", "el", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r",
           "s", "sh", "t", "th", "v", "w", "z"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ie", "y"]
_CODAS = ["", "", "", "n", "l", "r", "s", "th", "x", "nn", "ll", "ck"]


def make_names(n=2000, seed=0):
    """n made-up lowercase names (one to three syllables, 2 to 12 letters), the same for
    the same seed: microgpt's kind of documents, generated here since nothing may be
    downloaded.  A list of str."""
    import random
    if int(n) != n or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    rng = random.Random(seed)
    names = []
    while len(names) < n:
        name = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS)
                       for _ in range(rng.choice((1, 2, 2, 2, 3)))) + rng.choice(_CODAS)
        if 2 <= len(name) <= 12:
            names.append(name)
    return names
