"""The EPNAS policy network and its REINFORCE update (paper §3.1-3.2, supplement §2).

Imported lazily by :mod:`searchers.epnas.searcher` (it needs torch). The network reads an architecture
as a sequence of *layer tokens* and emits one morph decision:

* a **network embedding**: a trainable look-up of each layer token, then an LSTM over the layers
  (the last hidden state is the embedding);
* a **scale LSTM**: one step per filter group ``f < F``, 6 logits per group, read as two 3-way
  choices (channels up / keep / down, kernel up / keep / down);
* an **insert LSTM**: an autoregressive chain of decisions: kind (insert / keep / remove), the
  place (a softmax over the first ``L + 5`` of ``max_layers + 5`` logits, the paper's
  layer-count-dependent distribution), Src2 (the skip source: a softmax over the first
  ``position + 1`` logits, the last of which means "no skip", i.e. Src2 = -1), then one head per
  attribute of the inserted operation (op type from the insert table, channels, kernel, ...).

Choices the paper leaves open, made here (and tested in ``tests/test_epnas.py``):

* A place value ``v`` in ``[0, L + 5)`` is an insert position ``v mod (L + 1)`` (``L + 1``
  positions exist) and a removal index ``v mod L``. Folding the 4 extra values back over the
  network, rather than clamping them to "append at the end", follows the paper's stated reason
  for the ``L + 5`` distribution: to encourage inserting *inside* the network.
* Only decisions that take effect enter ``log pi``: for *keep* only the kind, for *remove* the
  kind and the place, for *insert* all of them; scale groups that hold no layer (``L < F``,
  the space's ``group_masks``) and scale axes the space does not use (``shape.scale_axes``)
  are left out too. Unused decisions would otherwise receive credit for a reward they did not
  influence.
* The scale LSTM is not autoregressive across groups (its input at group ``f`` is the network
  embedding plus a learned group embedding); the insert LSTM is (each decision is fed back as the
  next input, as in NAS controllers), because Src2 and the attributes depend on the place.
* Sampling runs without gradients; after the episode's rewards are in, :meth:`EPNASPolicy.score`
  recomputes the same log-probabilities with gradients in one batch (the parameters did not
  change in between, so they are the sampling-time values). This is what lets all ``N * T``
  candidates of an episode be asked as one batch before any reward is known.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from searchers.epnas.actions import EXTRA_PLACES, KIND_INSERT, KIND_KEEP, PolicyShape

SCALE_CHOICES = ("up", "keep", "down")


@contextmanager
def single_thread() -> Iterator[None]:
    """Run the (tiny) policy on one CPU thread, then restore the thread count.

    Batches of 8-80 short sequences are far too small to split; with the default thread pool
    on a busy machine the LSTMs ran 25x slower than on one thread.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _masked_log_softmax(logits: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Log-softmax over the first ``counts[b]`` entries of each row; the rest get -inf."""
    index = torch.arange(logits.shape[-1], device=logits.device)
    valid = index.unsqueeze(0) < counts.unsqueeze(-1)
    return torch.log_softmax(logits.masked_fill(~valid, float("-inf")), dim=-1)


def _entropy(log_probs: torch.Tensor) -> torch.Tensor:
    probs = log_probs.exp()
    return -(probs * torch.where(probs > 0, log_probs, torch.zeros_like(log_probs))).sum(-1)


class EPNASPolicy(nn.Module):
    """Network embedding -> scale LSTM + insert LSTM (see the module docstring)."""

    def __init__(self, shape: PolicyShape, embed_dim: int = 32, embed_hidden: int = 32,
                 controller_hidden: int = 128, init_range: float = 0.1,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.shape = shape
        self.pad_token = shape.n_tokens
        self.layer_embedding = nn.Embedding(shape.n_tokens + 1, embed_dim)
        self.network_lstm = nn.LSTM(embed_dim, embed_hidden, batch_first=True)
        self.scale_input = nn.Linear(embed_hidden, controller_hidden)
        self.group_embedding = nn.Embedding(shape.n_groups, controller_hidden)
        self.scale_lstm = nn.LSTM(controller_hidden, controller_hidden, batch_first=True)
        self.scale_head = nn.Linear(controller_hidden, 2 * len(SCALE_CHOICES))
        self.insert_input = nn.Linear(embed_hidden, controller_hidden)
        self.insert_start = nn.Parameter(torch.zeros(controller_hidden))
        self.insert_cell = nn.LSTMCell(controller_hidden, controller_hidden)
        sizes = shape.insert_sizes
        self.insert_heads = nn.ModuleList(nn.Linear(controller_hidden, s) for s in sizes)
        self.decision_embeddings = nn.ModuleList(nn.Embedding(s, controller_hidden) for s in sizes)
        for parameter in self.parameters():  # the paper: uniform in [-0.1, 0.1]
            nn.init.uniform_(parameter, -init_range, init_range, generator=generator)

    # -- pieces ----------------------------------------------------------------------------
    def embed(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Network embedding: the LSTM's output at each network's last layer."""
        outputs, _ = self.network_lstm(self.layer_embedding(tokens))
        last = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, outputs.shape[-1])
        return outputs.gather(1, last).squeeze(1)

    def _scale(self, net: torch.Tensor, group_masks: torch.Tensor,
               forced: torch.Tensor | None, generator: torch.Generator | None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, groups = net.shape[0], self.shape.n_groups
        inputs = self.scale_input(net).unsqueeze(1) + self.group_embedding.weight.unsqueeze(0)
        hidden, _ = self.scale_lstm(inputs)
        log_probs = torch.log_softmax(
            self.scale_head(hidden).view(batch, groups, 2, len(SCALE_CHOICES)), dim=-1)
        if forced is None:
            flat = log_probs.detach().exp().reshape(-1, len(SCALE_CHOICES))
            forced = torch.multinomial(flat, 1, generator=generator).view(batch, groups, 2)
        chosen = log_probs.gather(-1, forced.unsqueeze(-1)).squeeze(-1)  # (B, F, 2)
        axes = torch.tensor(self.shape.scale_axes, dtype=torch.bool)
        used = (group_masks.unsqueeze(-1) & axes).to(chosen.dtype)
        logp = (chosen * used).sum((1, 2))
        entropy = (_entropy(log_probs) * used).sum((1, 2))
        return forced, logp, entropy

    def _insert(self, net: torch.Tensor, lengths: torch.Tensor, forced: torch.Tensor | None,
                generator: torch.Generator | None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch = net.shape[0]
        base = self.insert_input(net)
        state = None
        step_input = base + self.insert_start
        decisions: list[torch.Tensor] = []
        logp = net.new_zeros(batch)
        entropy = net.new_zeros(batch)
        n_layers = lengths.to(torch.long)
        for k, (head, embedding) in enumerate(zip(self.insert_heads, self.decision_embeddings,
                                                  strict=True)):
            state = self.insert_cell(step_input, state)
            logits = head(state[0])
            counts = self._counts(k, n_layers, decisions, logits.shape[-1])
            log_probs = _masked_log_softmax(logits, counts)
            if forced is None:
                choice = torch.multinomial(log_probs.detach().exp(), 1,
                                           generator=generator).squeeze(-1)
            else:
                choice = forced[:, k]
            decisions.append(choice)
            used = self._used(k, decisions[0]).to(logp.dtype)
            logp = logp + log_probs.gather(-1, choice.unsqueeze(-1)).squeeze(-1) * used
            entropy = entropy + _entropy(log_probs) * used
            step_input = base + embedding(choice)
        return torch.stack(decisions, dim=1), logp, entropy

    def _counts(self, k: int, n_layers: torch.Tensor, decisions: list[torch.Tensor],
                size: int) -> torch.Tensor:
        """How many leading logits of insert head ``k`` are valid for each sample."""
        if k == 1:  # the place: L + 5 values
            return (n_layers + EXTRA_PLACES).clamp(max=size)
        if k == 2:  # Src2: the layers before the insert position, plus "no skip"
            position = decisions[1] % (n_layers + 1)
            return (position + 1).clamp(max=size)
        return torch.full_like(n_layers, size)

    @staticmethod
    def _used(k: int, kind: torch.Tensor) -> torch.Tensor:
        if k == 0:
            return torch.ones_like(kind, dtype=torch.bool)
        if k == 1:
            return kind != KIND_KEEP
        return kind == KIND_INSERT

    # -- the two entry points ---------------------------------------------------------------
    def batch_tokens(self, token_lists: Sequence[Sequence[int]]) -> tuple[torch.Tensor,
                                                                           torch.Tensor]:
        """Pad token lists into ``(tokens, lengths)``; an empty network is one pad token."""
        lengths = torch.tensor([max(1, len(t)) for t in token_lists], dtype=torch.long)
        tokens = torch.full((len(token_lists), int(lengths.max())), self.pad_token,
                            dtype=torch.long)
        for row, toks in enumerate(token_lists):
            if len(toks):
                tokens[row, : len(toks)] = torch.as_tensor(list(toks), dtype=torch.long)
        return tokens, torch.tensor([len(t) for t in token_lists], dtype=torch.long).clamp(min=0)

    def _group_masks(self, group_masks: Sequence[Sequence[bool]]) -> torch.Tensor:
        masks = torch.tensor([list(m) for m in group_masks], dtype=torch.bool)
        if masks.shape[1:] != (self.shape.n_groups,):
            raise ValueError(f"group_masks: expected {self.shape.n_groups} flags per network")
        return masks

    @torch.no_grad()
    def sample(self, token_lists: Sequence[Sequence[int]], group_masks: Sequence[Sequence[bool]],
               generator: torch.Generator) -> list[dict[str, Any]]:
        """One decision per network: ``{"scale": [[c, k]] * F, "insert": [kind, place, ...]}``.

        ``group_masks[b][f]`` says whether scale group ``f`` of network ``b`` holds a layer.
        Values index :data:`SCALE_CHOICES` / :data:`INSERT_KINDS` / the heads; also returns
        each decision's ``logp`` and ``entropy`` (floats, for events and tests).
        """
        tokens, lengths = self.batch_tokens(token_lists)
        with single_thread():
            net = self.embed(tokens, lengths.clamp(min=1))
            masks = self._group_masks(group_masks)
            scale, scale_logp, scale_entropy = self._scale(net, masks, None, generator)
            insert, insert_logp, insert_entropy = self._insert(net, lengths, None, generator)
        return [{"scale": scale[b].tolist(), "insert": insert[b].tolist(),
                 "logp": float(scale_logp[b] + insert_logp[b]),
                 "entropy": float(scale_entropy[b] + insert_entropy[b])}
                for b in range(len(token_lists))]

    def score(self, token_lists: Sequence[Sequence[int]], group_masks: Sequence[Sequence[bool]],
              decisions: Sequence[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log pi(a | X), entropy)`` per sample, with gradients, for given decisions."""
        tokens, lengths = self.batch_tokens(token_lists)
        scale = torch.tensor([d["scale"] for d in decisions], dtype=torch.long)
        insert = torch.tensor([d["insert"] for d in decisions], dtype=torch.long)
        with single_thread():
            net = self.embed(tokens, lengths.clamp(min=1))
            _, scale_logp, scale_entropy = self._scale(net, self._group_masks(group_masks),
                                                       scale, None)
            _, insert_logp, insert_entropy = self._insert(net, lengths, insert, None)
        return scale_logp + insert_logp, scale_entropy + insert_entropy


# -- REINFORCE ------------------------------------------------------------------------------
def returns_to_go(rewards: np.ndarray) -> np.ndarray:
    """``R[n, t] = sum_{t' >= t} r[n, t']`` for an ``(N, T)`` reward array (paper's g)."""
    return np.flip(np.cumsum(np.flip(np.asarray(rewards, dtype=float), axis=1), axis=1), axis=1)


def update_baseline(baseline: np.ndarray | None, returns: np.ndarray, told: np.ndarray,
                    decay: float) -> np.ndarray:
    """Per-step exponential moving average of the returns ``b(X_t)``.

    The paper writes ``b(X_t)`` without defining it; a moving average per step index ``t`` is
    used because returns-to-go at different ``t`` sum different numbers of rewards and so live
    on different scales. The first episode initialises it to its own mean return (so the first
    update is already centred); steps with no told candidate keep their value.
    """
    told = np.asarray(told, dtype=bool)
    counts = told.sum(axis=0)
    means = np.where(counts > 0, (returns * told).sum(axis=0) / np.maximum(counts, 1), 0.0)
    if baseline is None:
        return means
    return np.where(counts > 0, decay * baseline + (1.0 - decay) * means, baseline)


def reinforce_update(policy: EPNASPolicy, optimizer: torch.optim.Optimizer,
                     token_lists: Sequence[Sequence[int]], group_masks: Sequence[Sequence[bool]],
                     decisions: Sequence[dict[str, Any]], advantages: Sequence[float], n_branches: int,
                     entropy_weight: float = 0.0) -> dict[str, float]:
    """One Adam step on ``-(1/N) sum_{n,t} log pi(a_{t,n}|X_{t,n}) (R_{t,n} - b_t)``."""
    with single_thread():
        logp, entropy = policy.score(token_lists, group_masks, decisions)
        adv = torch.as_tensor(np.asarray(advantages, dtype=np.float32))
        loss = -(logp * adv).sum() / max(1, n_branches) - entropy_weight * entropy.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {"loss": float(loss.detach()), "entropy": float(entropy.detach().mean())}
