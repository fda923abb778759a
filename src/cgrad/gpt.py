"""microgpt's model (Karpathy's one-layer GPT) written with cgrad's tools.

The same parameters, drawn in microgpt's order (so the same seed gives microgpt's exact
starting point), and the same forward pass: `cgrad.linear` for the matrices (the
nodes `nn.Layer` builds, so that a recorded step runs each matrix over all of a
document's positions as one matrix product), `cgrad.dot` for attention, and softmax
through `cgrad.logsumexp` (no max taken in Python, so a recorded graph stays right
whatever the numbers).  Its losses equal microgpt's to ~1e-15 relative over training
(tests/test_gpt.py).  `loss()` takes tokens as one-hot rows, so that a recorded step
(`cgrad.compile`) takes each document's tokens as an input array: the embedding of a
token is a dot of its one-hot row with a column of the table, which is exactly the
table's entry (every other term is 0 * w).  examples/microgpt.py trains it.

Two choices keep every gradient's sum order what replay's layers need (csrc/layers.c:
a row's dots at one distance from the loss, each number's contributions arriving in
order of that distance): v reads its own rmsnorm of x (the same numbers as q's and
k's, computed twice), since k's path to the loss runs through the softmax's
logsumexp and v's does not; and the loss is `losses.cross_entropy`'s
`logsumexp(z - z[target])`, whose terms reach the logits nearest first.
"""
import math
import random

import numpy as np

import cgrad
from cgrad._core import ParameterList, Value
from cgrad.losses import cross_entropy


class MicroGPT:
    """microgpt's parameters, drawn in microgpt's order, and its forward pass."""

    def __init__(self, vocab_size, n_embd, block_size, n_layer, n_head):
        self.vocab_size, self.n_embd, self.block_size = vocab_size, n_embd, block_size
        self.n_layer, self.n_head, self.head_dim = n_layer, n_head, n_embd // n_head
        matrix = lambda nout, nin, std=0.08: [
            ParameterList([Value(random.gauss(0, std)) for _ in range(nin)])
            for _ in range(nout)]
        sd = {'wte': matrix(vocab_size, n_embd), 'wpe': matrix(block_size, n_embd),
              'lm_head': matrix(vocab_size, n_embd)}
        for i in range(n_layer):
            sd[f'layer{i}.attn_wq'] = matrix(n_embd, n_embd)
            sd[f'layer{i}.attn_wk'] = matrix(n_embd, n_embd)
            sd[f'layer{i}.attn_wv'] = matrix(n_embd, n_embd)
            sd[f'layer{i}.attn_wo'] = matrix(n_embd, n_embd)
            sd[f'layer{i}.mlp_fc1'] = matrix(4 * n_embd, n_embd)
            sd[f'layer{i}.mlp_fc2'] = matrix(n_embd, 4 * n_embd)
        self.sd = sd
        self.params = [p for mat in sd.values() for row in mat for p in row]
        self.wte_columns = [[row[j] for row in sd['wte']] for j in range(n_embd)]
        self.qk_rows = [sd[f'layer{i}.attn_wq'] + sd[f'layer{i}.attn_wk'] for i in range(n_layer)]

    def embed_one_hot(self, row):
        """A token given as a one-hot row of Values (a replay input): dots with the
        table's columns."""
        return [cgrad.dot(row, column) for column in self.wte_columns]

    def embed_id(self, token_id):
        return self.sd['wte'][token_id]

    @staticmethod
    def linear(x, w):
        return cgrad.linear(w, x)

    @staticmethod
    def rmsnorm(x):
        ms = cgrad.dot(x, x) / len(x)
        scale = (ms + 1e-5) ** -0.5
        return [xi * scale for xi in x]

    def logits(self, tok_emb, pos_id, keys, values):
        """microgpt's gpt(): the logits at one position (its keys and values cached)."""
        sd, hd = self.sd, self.head_dim
        x = [t + p for t, p in zip(tok_emb, sd['wpe'][pos_id])]
        x = self.rmsnorm(x)
        for li in range(self.n_layer):
            x_residual = x
            qk = self.linear(self.rmsnorm(x), self.qk_rows[li])   # one row over x
            q, k = qk[:self.n_embd], qk[self.n_embd:]
            v = self.linear(self.rmsnorm(x), sd[f'layer{li}.attn_wv'])  # another (above)
            keys[li].append(k)
            values[li].append(v)
            x_attn = []
            for h in range(self.n_head):
                hs = h * hd
                q_h = q[hs:hs + hd]
                scores = [cgrad.dot(q_h, ki[hs:hs + hd]) / hd ** 0.5 for ki in keys[li]]
                norm = cgrad.logsumexp(scores)
                weights = [(s - norm).exp() for s in scores]
                x_attn.extend(cgrad.dot(weights, [vi[hs + j] for vi in values[li]])
                              for j in range(hd))
            x = self.linear(x_attn, sd[f'layer{li}.attn_wo'])
            x = [a + b for a, b in zip(x, x_residual)]
            x_residual = x
            x = self.rmsnorm(x)
            x = [xi.relu() for xi in self.linear(x, sd[f'layer{li}.mlp_fc1'])]
            x = self.linear(x, sd[f'layer{li}.mlp_fc2'])
            x = [a + b for a, b in zip(x, x_residual)]
        return self.linear(x, sd['lm_head'])

    def loss(self, tokens, targets):
        """Mean cross-entropy over a document: tokens and targets are (n, vocab) rows
        of one-hot leaves."""
        n_layer = self.n_layer
        keys, values = [[] for _ in range(n_layer)], [[] for _ in range(n_layer)]
        losses = []
        for pos_id, (tok, tgt) in enumerate(zip(tokens, targets)):
            logits = self.logits(self.embed_one_hot(tok), pos_id, keys, values)
            losses.append(cross_entropy(logits, tgt))
        return cgrad.sum(losses) * (1 / len(losses))

    def sample(self, bos, temperature=0.5):
        keys, values = [[] for _ in range(self.n_layer)], [[] for _ in range(self.n_layer)]
        token_id, out = bos, []
        for pos_id in range(self.block_size):
            logits = self.logits(self.embed_id(token_id), pos_id, keys, values)
            z = [l.data / temperature for l in logits]
            m = max(z)
            weights = [math.exp(v - m) for v in z]
            token_id = random.choices(range(self.vocab_size), weights=weights)[0]
            if token_id == bos:
                break
            out.append(token_id)
        return out


def tokenizer(docs):
    """microgpt's: the sorted characters of the documents, then BOS.  Returns
    (uchars, bos, vocab_size)."""
    uchars = sorted(set(''.join(docs)))
    return uchars, len(uchars), len(uchars) + 1


def document_arrays(doc, uchars, bos, block_size):
    """A document's training pairs as one-hot rows: (tokens, targets), each (n, vocab)."""
    tokens = [bos] + [uchars.index(ch) for ch in doc] + [bos]
    n = min(block_size, len(tokens) - 1)
    one_hot = np.eye(bos + 1)
    return one_hot[tokens[:n]], one_hot[tokens[1:n + 1]]
