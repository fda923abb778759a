"""microgpt's model in JAX, as a JAX user would write it: the benchmark's reference for
a compiled array framework on the same work.

The parameters are cgrad.gpt's (microgpt's draw, from microgpt's seed), copied into
float64 arrays; a step is one document, every position at once (causal attention over
the whole sequence), and Adam with microgpt's settings and learning-rate decay,
written out (JAX has no optimizer of its own; optax is not a dependency).  The step is
`jax.jit`-compiled, once per document length, as `cgrad.compile` records once per
length.  Its losses equal microgpt's to ~1e-12 relative (tests/test_gpt.py).
"""
import math


def make_step(model, steps):
    """(step(k, tokens, targets) -> loss as a float) for cgrad.gpt.MicroGPT `model`'s
    weights; tokens and targets are a document's one-hot rows (cgrad.gpt.document_arrays),
    as the cgrad way takes them."""
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    params = {name: jnp.asarray([[p.data for p in row] for row in mat], dtype=jnp.float64)
              for name, mat in model.sd.items()}
    n_head, head_dim = model.n_head, model.head_dim
    tree_map = jax.tree_util.tree_map

    def rmsnorm(x):
        return x * (jnp.mean(x * x, axis=-1, keepdims=True) + 1e-5) ** -0.5

    def loss_of(params, tokens, targets):
        n = tokens.shape[0]
        x = rmsnorm(params["wte"][tokens] + params["wpe"][:n])
        causal = jnp.tril(jnp.ones((n, n), dtype=bool))
        for li in range(model.n_layer):
            w = lambda name: params[f"layer{li}.{name}"]
            residual, x = x, rmsnorm(x)
            q, k, v = (  # (heads, n, head_dim)
                (x @ w(name).T).reshape(n, n_head, head_dim).transpose(1, 0, 2)
                for name in ("attn_wq", "attn_wk", "attn_wv"))
            scores = (q @ k.transpose(0, 2, 1)) / math.sqrt(head_dim)
            attention = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)
            x = (attention @ v).transpose(1, 0, 2).reshape(n, -1) @ w("attn_wo").T + residual
            residual, x = x, rmsnorm(x)
            x = jax.nn.relu(x @ w("mlp_fc1").T) @ w("mlp_fc2").T + residual
        log_probs = jax.nn.log_softmax(x @ params["lm_head"].T, axis=-1)
        return -jnp.mean(log_probs[jnp.arange(n), targets])

    @jax.jit
    def update(params, m, v, t, lr, tokens, targets):
        loss, grads = jax.value_and_grad(loss_of)(params, tokens, targets)
        beta1, beta2, eps = 0.85, 0.99, 1e-8
        m = tree_map(lambda m, g: beta1 * m + (1 - beta1) * g, m, grads)
        v = tree_map(lambda v, g: beta2 * v + (1 - beta2) * g * g, v, grads)
        params = tree_map(lambda p, m, v: p - lr * (m / (1 - beta1 ** t))
                          / (jnp.sqrt(v / (1 - beta2 ** t)) + eps), params, m, v)
        return params, m, v, loss

    zeros = tree_map(jnp.zeros_like, params)
    box = {"params": params, "m": zeros, "v": zeros}

    def step(k, token_rows, target_rows):
        tokens = jnp.asarray(token_rows.argmax(axis=1))
        targets = jnp.asarray(target_rows.argmax(axis=1))
        box["params"], box["m"], box["v"], loss = update(
            box["params"], box["m"], box["v"], float(k + 1), 0.01 * (1 - k / steps),
            tokens, targets)
        return float(loss)
    return step
