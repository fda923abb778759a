"""microgpt's model in PyTorch, as a PyTorch user would write it: the benchmark's
reference for what the tool people would otherwise pick costs on the same work.

The parameters are cgrad.gpt's (microgpt's draw, from microgpt's seed), copied into
float64 tensors; a step is one document, every position at once (causal attention
over the whole sequence rather than microgpt's key-value cache: the same numbers), and
torch.optim.Adam with microgpt's settings and learning-rate decay.  Its losses equal
microgpt's to ~1e-12 relative (tests/test_gpt.py).
"""
import math


def make_step(model, steps):
    """(step(k, tokens, targets) -> loss as a float) for cgrad.gpt.MicroGPT `model`'s
    weights; tokens and targets are a document's one-hot rows (cgrad.gpt.document_arrays),
    as the cgrad way takes them."""
    import torch
    weights = {name: torch.tensor([[p.data for p in row] for row in mat],
                                  dtype=torch.float64, requires_grad=True)
               for name, mat in model.sd.items()}
    optimizer = torch.optim.Adam(list(weights.values()), lr=0.01, betas=(0.85, 0.99),
                                 eps=1e-8)
    n_head, head_dim = model.n_head, model.head_dim

    def rmsnorm(x):
        return x * ((x * x).mean(dim=-1, keepdim=True) + 1e-5) ** -0.5

    def loss_of(tokens, targets):
        n = tokens.shape[0]
        x = rmsnorm(weights["wte"][tokens] + weights["wpe"][:n])
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        for li in range(model.n_layer):
            w = lambda name: weights[f"layer{li}.{name}"]
            residual, x = x, rmsnorm(x)
            q, k, v = (  # (heads, n, head_dim)
                (x @ w(name).T).view(n, n_head, head_dim).transpose(0, 1)
                for name in ("attn_wq", "attn_wk", "attn_wv"))
            scores = (q @ k.transpose(1, 2)) / math.sqrt(head_dim)
            attention = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)
            x = (attention @ v).transpose(0, 1).reshape(n, -1) @ w("attn_wo").T + residual
            residual, x = x, rmsnorm(x)
            x = torch.relu(x @ w("mlp_fc1").T) @ w("mlp_fc2").T + residual
        logits = x @ weights["lm_head"].T
        return torch.nn.functional.cross_entropy(logits, targets)

    def step(k, token_rows, target_rows):
        tokens = torch.from_numpy(token_rows.argmax(axis=1))
        targets = torch.from_numpy(target_rows.argmax(axis=1))
        for group in optimizer.param_groups:
            group["lr"] = 0.01 * (1 - k / steps)
        loss = loss_of(tokens, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()
    return step
