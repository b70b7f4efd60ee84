"""EPNAS: progressive REINFORCE search under soft resource constraints (Zhou et al.).

One *episode* (paper Fig. 1): ``N`` branches each start from a network ``X_{0,n}`` and the
policy morphs it ``T`` times, ``X_{t+1,n} = morph(X_{t,n}, a_{t,n})``, ``a ~ pi(.|X_{t,n})``.
The ``N * T`` morphed networks are the episode's candidates. Because a morph needs only the
previous network, not its reward, the whole episode is sampled up front and asked as one batch
(``ask`` hands out its jobs, the coordinator runs them in parallel). When every result is told:

* reward ``r = accuracy * prod_i p_i ** violation_i`` (Eq. 2-3, :func:`soft_reward`);
* one Adam step on the paper's gradient
  ``g = 1/N sum_n sum_t grad log pi(a_{t,n}|X_{t,n}) (sum_{t'>=t} r_{t',n} - b_t)``
  with ``b_t`` a moving average of the returns at step ``t``;
* the top-``N`` candidates (by reward, distinct architectures) start the next episode's
  branches. The first episode starts from random networks (paper: "a randomly generated
  architecture"), or from the space's small initial network with ``initial="small"``.

Search patterns (§3.3): layer by layer over the ``layerwise`` space (Table 2; insert adds a
layer), module search over the ``module`` space (Table 3, :mod:`searchers.epnas.module_space`;
insert adds a branch), and, as a named option, module search over PNAS cells (``cell``, see
:mod:`searchers.epnas.cell_morph`).

Performance prediction (§3.4): with ``performance_prediction`` the jobs train with the short,
large-batch, high-learning-rate ``prediction_train`` overrides of the run's training spec
(paper: LR 0.5, batch 1024, stop at 10 epochs), and with ``share_weights`` they start from a
global dictionary keyed by (layer number, op type): each result sends its trained weights back,
a key keeps the weights of the most accurate model per parameter-shape signature (up to
``shared_variants`` signatures), and a job inherits, per key, the stored signature closest to
its own shapes; :func:`searchers.training.inherit_weights` crops or pads the remaining
differences. The dictionary is bounded (``sharing_mb``; the least accurate variants go
first), its tensors go into ``state_dict()`` as they are (never copied: an entry is replaced,
never changed in place) so the store writes only the entries that changed. An evaluator that
never returns weights (``synthetic``) turns sharing off at its first successful result.
Without performance prediction the jobs train with ``full_train`` (paper: 20 epochs of SGDR,
T0 = 10, Tmult = 2).

Not in the paper, each an option: ``adaptive_p`` (dual ascent on each metric's ``p`` toward a
feasible fraction, :meth:`EPNASSearcher._adapt_p`) and ``baseline="parent"``.

Choices the paper leaves open (each tested in ``tests/test_epnas*.py``):

* The baseline ``b(X_t)`` is an exponential moving average (``baseline_decay``) of the mean
  return at step ``t``, initialised with the first episode's means.
* The next episode's branches are the top ``N`` *distinct* architectures of the episode (by
  canonical hash, ties broken by the earlier job), repeated cyclically if fewer exist. Without
  the dedup, repeated "keep" morphs fill the branches with copies. With ``hard_constraints``,
  morphs the cost LUT screened out (reward 0, never trained) are not candidates for the top N:
  started from, they made whole episodes screened and the search stop early; an episode that
  evaluated nothing keeps its start networks.
* No network is trained twice (``duplicates="resample"``): a morph that repeats a network the
  run evaluated, or will evaluate this episode, is re-sampled from the policy up to
  ``resample_tries`` times; if every try repeats, the candidate reuses the earlier result (its
  reward under the current ``p``) without a job, and the episode event lists it under
  ``reused``. ``duplicates="evaluate"`` trains repeats again (noisy evaluators). Such a
  repeat earns the policy nothing (``repeat_reward="zero"``): it brings no new network. With
  the earlier result's reward (``"original"``) the policy was paid for free repeats and
  collapsed onto them: on two-sided/``cell`` at 600 evaluations the entropy fell from ~6 to
  1.1, every morph of an episode repeated a known network even after 10 re-samples, all 8
  branches were one 1-block cell, and the search stopped at 384 evaluations. The result still
  counts for the next episode's top ``N``.
* A budget that ends mid-episode truncates the episode in (step, branch) order; the policy still
  learns from the candidates that were evaluated.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from searchers.base import Job, Result, Searcher
from searchers.constraints import feasible
from searchers.errors import NaswError

PAPER_PREDICTION_TRAIN: dict[str, Any] = {
    "epochs": 10, "batch_size": 1024, "lr": 0.5, "lr_min": 0.001, "schedule": "cosine",
    "nesterov": True,
}
#: training without performance prediction (§4.1): 20 epochs, batch 128, Nesterov, SGDR from
#: 0.05 to 0.001 with T0 = 10, Tmult = 2
PAPER_FULL_TRAIN: dict[str, Any] = {
    "epochs": 20, "batch_size": 128, "lr": 0.05, "lr_min": 0.001,
    "schedule": "cosine_restarts", "restart_t0": 10, "restart_mult": 2, "nesterov": True,
}
DIGITS_PREDICTION_TRAIN: dict[str, Any] = {
    "epochs": 4, "batch_size": 256, "lr": 0.2, "lr_min": 0.001, "schedule": "cosine",
    "nesterov": True,
}
DEFAULT_STEPS = {"layerwise": 10, "module": 5, "cell": 5}  # paper: steps per search pattern
INITIAL_NETWORKS = ("random", "small")
DUPLICATES = ("resample", "evaluate")
REPEAT_REWARDS = ("zero", "original")
MAX_EMPTY_EPISODES = 20  # episodes in a row with no new network before the search stops
BASELINES = ("parent", "moving_average")


class EPNASSearcher(Searcher):
    """EPNAS (see the module docstring). Parameters: :meth:`default_params`."""

    name: ClassVar[str] = "epnas"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # The paper's CIFAR-10 training details (§4.1): 8 branches, T = 10 (layer by layer) or
        # 5 (module search), LSTMs of 32 / 128 units, Adam 6e-4, uniform init in [-0.1, 0.1].
        "epnas-paper": {},
        # Digits on a CPU: the same algorithm, a short proxy and a faster-learning policy, since
        # a few hundred candidates give the policy only ~10 updates instead of the paper's 15
        # episodes of large batches; adaptive p, which raised the feasible fraction and the best
        # feasible model over p = 0.9 on every problem measured (docs/epnas.md).
        "epnas-digits": {"steps": 5, "lr": 0.005, "adaptive_p": True,
                         "prediction_train": dict(DIGITS_PREDICTION_TRAIN),
                         "full_train": {"epochs": 6, "schedule": "cosine_restarts",
                                        "restart_t0": 2, "restart_mult": 2}},
    }

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {
            "branches": 8, "steps": None, "embed_dim": 32, "embed_hidden": 32,
            "controller_hidden": 128, "lr": 0.0006, "init_range": 0.1,
            "baseline": "moving_average", "baseline_decay": 0.9,
            "entropy_weight": 0.0, "initial": "random", "share_weights": True,
            "shared_variants": 4, "sharing_mb": 64.0, "performance_prediction": True,
            "prediction_train": dict(PAPER_PREDICTION_TRAIN),
            "full_train": dict(PAPER_FULL_TRAIN), "cell_scale_filters": False,
            "duplicates": "resample", "resample_tries": 10, "adaptive_p": False,
            "feasible_target": 0.5, "p_step": 1.0, "p_min": 0.1, "repeat_reward": "zero",
        }

    def __init__(self, space: Any, **kwargs: Any) -> None:
        super().__init__(space, **kwargs)
        import torch

        from searchers.epnas.morphs import morpher_for
        from searchers.epnas.policy import EPNASPolicy

        p = self.params
        for key in ("branches", "embed_dim", "embed_hidden", "controller_hidden",
                    "shared_variants"):
            if not isinstance(p[key], int) or isinstance(p[key], bool) or p[key] < 1:
                raise NaswError(f"searcher.params.{key}", p[key], "a positive integer")
        if p["steps"] is None:
            p["steps"] = DEFAULT_STEPS.get(space.name, 5)
        if not isinstance(p["steps"], int) or p["steps"] < 1:
            raise NaswError("searcher.params.steps", p["steps"], "a positive integer or null")
        if p["initial"] not in INITIAL_NETWORKS:
            raise NaswError("searcher.params.initial", p["initial"], INITIAL_NETWORKS)
        if p["baseline"] not in BASELINES:
            raise NaswError("searcher.params.baseline", p["baseline"], BASELINES)
        if p["duplicates"] not in DUPLICATES:
            raise NaswError("searcher.params.duplicates", p["duplicates"], DUPLICATES)
        if p["repeat_reward"] not in REPEAT_REWARDS:
            raise NaswError("searcher.params.repeat_reward", p["repeat_reward"], REPEAT_REWARDS)
        if (isinstance(p["resample_tries"], bool) or not isinstance(p["resample_tries"], int)
                or p["resample_tries"] < 0):
            raise NaswError("searcher.params.resample_tries", p["resample_tries"],
                            "a non-negative integer")
        if not 0.0 < float(p["feasible_target"]) <= 1.0:
            raise NaswError("searcher.params.feasible_target", p["feasible_target"],
                            "a fraction in (0, 1]")
        if isinstance(p["sharing_mb"], bool) or not float(p["sharing_mb"]) > 0.0:
            raise NaswError("searcher.params.sharing_mb", p["sharing_mb"], "a positive number")
        if not 0.0 < float(p["p_min"]) <= 1.0:
            raise NaswError("searcher.params.p_min", p["p_min"], "a number in (0, 1]")
        if not float(p["p_step"]) > 0.0:
            raise NaswError("searcher.params.p_step", p["p_step"], "a positive number")
        if not 0.0 <= float(p["baseline_decay"]) < 1.0:
            raise NaswError("searcher.params.baseline_decay", p["baseline_decay"], "0 <= d < 1")
        self.morpher = morpher_for(space, cell_scale_filters=bool(p["cell_scale_filters"]))
        # with prediction: the short large-batch proxy; without: the paper's full schedule
        # (20 epochs of SGDR), each laid over the run's train section
        which = "prediction_train" if p["performance_prediction"] else "full_train"
        overrides = dict(p[which] or {})
        try:
            self.job_train = type(self.train_spec).from_dict(
                {**self.train_spec.to_dict(), **overrides})
        except NaswError as err:
            field = err.field.replace("train.", f"searcher.params.{which}.", 1)
            raise NaswError(field, err.value, err.allowed) from None
        self.rng = np.random.default_rng(self.seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.policy = EPNASPolicy(self.morpher.shape, embed_dim=p["embed_dim"],
                                  embed_hidden=p["embed_hidden"],
                                  controller_hidden=p["controller_hidden"],
                                  init_range=float(p["init_range"]), generator=self.generator)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=float(p["lr"]))
        self.baseline: np.ndarray | None = None
        self.episode_index = 0
        self.branches: list[dict[str, Any]] = []
        self.branch_rewards: list[float | None] = []  # reward of each branch's start network
        self.branch_jobs: list[int] = []  # the job that evaluated each start network (-1: none)
        self.episode: dict[str, Any] | None = None  # entries + queue of the running episode
        self.sharing: dict[str, list[dict[str, Any]]] = {}
        self._sharing_bytes = 0  # tensor bytes held by the dictionary
        self.sharing_active = bool(p["share_weights"])
        self._configured_p = self.reward_p  # adaptive_p never goes softer than this
        self._evaluated: dict[str, int] = {}  # architecture hash -> first job id (history)
        self.exhausted = False

    # -- ask / tell ----------------------------------------------------------------------
    def reward(self, result: Result) -> float:
        """Eq. (2)-(3) soft reward; with ``hard_constraints`` the indicator of Eq. (1) instead
        (accuracy if feasible, else 0: the sparse reward the paper relaxes, for ablations)."""
        if self.hard_constraints:
            return float(result.accuracy) if result.ok and self.is_feasible(result.costs) else 0.0
        return super().reward(result)

    def done(self) -> bool:
        return self.n_told >= self.budget or self.exhausted

    def _ask(self, n: int) -> list[Job]:
        for _ in range(MAX_EMPTY_EPISODES):
            if self.episode is not None:
                break
            if self._next_id >= self.budget:
                return []
            self._start_episode()
            assert self.episode is not None
            if not self.episode["queue"]:  # every morph gave a network evaluated before
                self._finish_episode()
        else:
            self.exhausted = True  # the policy finds nothing new: stop rather than spin
            return []
        assert self.episode is not None
        jobs = []
        queue = self.episode["queue"]
        while queue and len(jobs) < n:
            index = queue.pop(0)
            entry = self.episode["entries"][index]
            job = self.new_job(
                entry["genotype"], train=self.job_train,
                tag=f"episode {self.episode['index']} / branch {entry['branch']} / "
                    f"step {entry['step']}",
                inherit=self._inherit_for(entry["genotype"]) if self.sharing_active else None,
                return_weights=self.sharing_active,
                meta={"episode": self.episode["index"], "branch": entry["branch"],
                      "step": entry["step"], "entry": index})
            entry["job_id"] = job.id
            jobs.append(job)
        return jobs

    def _tell(self, job: Job, result: Result) -> None:
        episode = self.episode
        if episode is None or job.meta.get("episode") != episode["index"]:
            raise NaswError("job.meta.episode", job.meta.get("episode"),
                            [episode["index"]] if episode else "no episode is running")
        entry = episode["entries"][int(job.meta["entry"])]
        told = self.history[-1]
        self._evaluated.setdefault(self.space.hash(job.genotype), job.id)
        entry.update(reward=told["reward"], accuracy=told["accuracy"], feasible=told["feasible"],
                     costs=dict(told["costs"]) if result.ok else None)
        if result.ok and job.return_weights:
            if result.weights is None:
                self.sharing_active = False  # this evaluator never sends weights back
                self.sharing = {}
                self._sharing_bytes = 0
            else:
                self._share(job.genotype, result.weights, float(result.accuracy))
        asked = [e for e in episode["entries"] if e["job_id"] is not None]
        if not episode["queue"] and all(e["reward"] is not None for e in asked):
            self._finish_episode()

    # -- episodes ------------------------------------------------------------------------
    def _initial_networks(self) -> list[dict[str, Any]]:
        n = self.params["branches"]
        if self.params["initial"] == "small":
            return [self.morpher.initial() for _ in range(n)]
        return [self.space.sample(self.rng) for _ in range(n)]

    def _start_episode(self) -> None:
        """Sample all T morph steps of all N branches now: no reward is needed in between."""
        if not self.branches:
            self.branches = self._initial_networks()
        networks = [copy.deepcopy(g) for g in self.branches]
        entries: list[dict[str, Any]] = []
        resample = self.params["duplicates"] == "resample"
        planned: dict[str, int] = {}  # hash -> entry index, this episode
        for step in range(self.params["steps"]):
            tokens = [self.morpher.tokens(g) for g in networks]
            masks = [self.morpher.group_mask(g) for g in networks]
            decisions = self.policy.sample(tokens, masks, self.generator)
            for branch, decision in enumerate(decisions):
                new = self.morpher.morph(networks[branch], decision)
                key = self.space.hash(new)
                tries = 0
                while (resample and (key in self._evaluated or key in planned)
                       and tries < int(self.params["resample_tries"])):
                    decision = self.policy.sample([tokens[branch]], [masks[branch]],
                                                  self.generator)[0]
                    new = self.morpher.morph(networks[branch], decision)
                    key = self.space.hash(new)
                    tries += 1
                reuse = None
                if self._screened_infeasible(new):
                    reuse = {"screened": True}
                elif resample and key in self._evaluated:
                    reuse = {"job": self._evaluated[key]}
                elif resample and key in planned:
                    reuse = {"entry": planned[key]}
                else:
                    planned[key] = len(entries)
                networks[branch] = new
                entries.append({
                    "step": step, "branch": branch, "tokens": tokens[branch],
                    "mask": masks[branch],
                    "decision": {"scale": decision["scale"], "insert": decision["insert"]},
                    "entropy": decision["entropy"], "genotype": new, "reuse": reuse,
                    "resampled": tries, "job_id": None, "reward": None, "accuracy": None,
                    "feasible": None})
        remaining = self.budget - self._next_id
        fresh = [i for i, e in enumerate(entries) if e["reuse"] is None]
        self.episode = {"index": self.episode_index, "entries": entries,
                        "queue": fresh[:max(0, remaining)]}

    def _finish_episode(self) -> None:
        """Policy gradient step, events, and the next episode's branches."""
        from searchers.epnas.policy import reinforce_update, returns_to_go, update_baseline

        assert self.episode is not None
        reused = self._fill_reused(self.episode["entries"])
        entries = [e for e in self.episode["entries"] if e["reward"] is not None]
        if not entries:
            self.episode = None
            self.episode_index += 1
            return
        n_branches, n_steps = self.params["branches"], self.params["steps"]
        rewards = np.zeros((n_branches, n_steps))
        told = np.zeros((n_branches, n_steps), dtype=bool)
        zero_repeats = self.params["repeat_reward"] == "zero"
        for e in entries:
            repeat = e.get("source_job") is not None
            rewards[e["branch"], e["step"]] = 0.0 if zero_repeats and repeat else e["reward"]
            told[e["branch"], e["step"]] = True
        returns = returns_to_go(rewards)
        new_baseline = update_baseline(self.baseline, returns, told,
                                       float(self.params["baseline_decay"]))
        used_baseline = self.baseline if self.baseline is not None else new_baseline
        advantages = self._advantages(entries, rewards, returns, told, used_baseline)
        stats = reinforce_update(
            self.policy, self.optimizer, [e["tokens"] for e in entries],
            [e["mask"] for e in entries], [e["decision"] for e in entries], advantages,
            n_branches, float(self.params["entropy_weight"]))
        self.baseline = new_baseline
        episode_rewards = [e["reward"] for e in entries]
        metrics = {
            "mean_reward": float(np.mean(episode_rewards)),
            "max_reward": float(np.max(episode_rewards)),
            "feasible_fraction": float(np.mean([bool(e["feasible"]) for e in entries])),
            "entropy": float(np.mean([e["entropy"] for e in entries])),
            "loss": stats["loss"], "baseline": float(np.mean(self.baseline)),
            "reused": float(len(reused)),
            "resampled": float(sum(e["resampled"] for e in self.episode["entries"])),
        }
        if self.params["adaptive_p"] and not self.hard_constraints and self.constraints:
            for metric, p in self._adapt_p(entries).items():
                metrics[f"p_{metric}"] = p
            # rewards change scale with p: a moving average of old returns would make every
            # next advantage negative, so the next episode starts the baseline afresh
            self.baseline = None
        best = self.best()
        if best is not None and best["feasible"]:
            metrics["best_feasible_accuracy"] = float(best["accuracy"])
        top = self._top_entries(entries)
        self.emit("episode", self.episode["index"],
                  {"episode": self.episode["index"], "candidates": len(entries),
                   "best_id": best["id"] if best else None,
                   "branches": [_job_of(e) for e in top], "reused": reused},
                  **metrics)
        if top:  # an episode with nothing evaluated keeps its start networks
            self.branches = [copy.deepcopy(e["genotype"]) for e in top]
            self.branch_rewards = [float(e["reward"]) for e in top]
            self.branch_jobs = [_job_of(e) for e in top]
        self.episode = None
        self.episode_index += 1

    def _fill_reused(self, entries: list[dict[str, Any]]) -> list[dict[str, int]]:
        """Give each entry that repeats an evaluated network that evaluation's result (its
        reward under the current ``p``), without training it again. Returns what was reused:
        ``{"step", "branch", "job"}`` per entry, for the episode event."""
        by_id = {h["id"]: h for h in self.history}
        reused = []
        for e in entries:
            source = e.get("reuse")
            if source is None:
                continue
            if source.get("screened"):  # Eq. (1): infeasible on the cost LUT, reward 0
                e.update(reward=0.0, accuracy=None, feasible=False)
                continue
            job_id = (source["job"] if "job" in source
                      else entries[source["entry"]]["job_id"])
            told = by_id.get(job_id)
            if told is None:  # its original was cut off by the budget
                continue
            result = Result(status=told["status"], accuracy=told["accuracy"],
                            costs=told["costs"])
            e.update(reward=self.reward(result), accuracy=told["accuracy"],
                     feasible=told["feasible"], costs=dict(told["costs"]) if result.ok else None,
                     source_job=int(job_id))
            reused.append({"step": e["step"], "branch": e["branch"], "job": int(job_id)})
        return reused

    def _screened_infeasible(self, genotype: dict[str, Any]) -> bool:
        """With ``hard_constraints``, a morph the cost LUT shows infeasible is not trained: its
        Eq. (1) reward is 0 whatever its accuracy, so the policy is told 0 at no evaluation's
        cost (as random search and evolution reject such samples). ``latency_ms`` is measured,
        not in the LUT, so it is never screened."""
        checkable = [c for c in self.constraints if c.metric != "latency_ms"]
        if not (self.hard_constraints and checkable):
            return False
        costs = self.space.costs(genotype, self.input_shape, self.num_classes)
        return not feasible(costs, checkable)

    def _adapt_p(self, entries: list[dict[str, Any]]) -> dict[str, float]:
        """Dual ascent on each metric's base penalty toward ``feasible_target``.

        With ``lambda_i = -ln p_i`` (the penalty rate of Eq. 2) and ``f`` the fraction of the
        episode's successful candidates that satisfy every constraint:
        ``lambda_i <- clip(lambda_i + p_step * (feasible_target - f), lambda_i0, -ln p_min)``,
        ``lambda_i0`` the configured ``reward_p``. While too few candidates are feasible every
        penalty steepens (a constraint the candidates satisfy has no violation, so its ``p``
        does not matter); once enough are, the penalties relax back to the configured ones,
        never softer. Returns the new ``p`` per metric (they apply from the next episode on).
        """
        ok = [e for e in entries if e.get("costs") is not None]
        if not ok:
            return {}
        fraction = float(np.mean([all(c.satisfied(e["costs"]) for c in self.constraints)
                                  for e in ok]))
        step = float(self.params["p_step"]) * (float(self.params["feasible_target"]) - fraction)
        new: dict[str, float] = {}
        for metric in sorted({c.metric for c in self.constraints}):
            floor = -math.log(_p_of(self._configured_p, metric))
            rate = max(floor, -math.log(_p_of(self.reward_p, metric)) + step)
            new[metric] = max(math.exp(-rate), float(self.params["p_min"]))
        self.reward_p = new
        return new

    def _advantages(self, entries: list[dict[str, Any]], rewards: np.ndarray,
                    returns: np.ndarray, told: np.ndarray, moving: np.ndarray) -> list[float]:
        """``R_{t,n} - b(X_{t,n})`` per told entry (see ``baseline`` in the module docstring).

        ``"parent"``: ``b(X_t) = k * r(X_t)``, the return of keeping the network being
        morphed for the ``k`` told steps left (the reward of the previous step's network, or
        of the branch's start network at ``t = 0``); the moving average where that reward is
        unknown (the first episode's random start networks). ``"moving_average"``: ``b_t``.
        """
        advantages = []
        for e in entries:
            n, t = e["branch"], e["step"]
            baseline = float(moving[t])
            if self.params["baseline"] == "parent":
                parent = (rewards[n, t - 1] if t > 0 and told[n, t - 1]
                          else self.branch_rewards[n] if t == 0 and self.branch_rewards
                          else None)
                if parent is not None:
                    baseline = float(told[n, t:].sum()) * float(parent)
            advantages.append(float(returns[n, t]) - baseline)
        return advantages

    def _top_entries(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The top-N distinct architectures by reward, repeated cyclically to fill N.

        Morphs screened out as infeasible by the cost LUT (never trained) never start a
        branch: an untrained infeasible network is no "model" of the episode, and starting from
        one made whole episodes screened (on two-sided/cell the search stopped at 412 of 600
        evaluations, 20 episodes in a row with no new job). With nothing else, this is empty
        and the episode's start networks start the next one again."""
        evaluated = [e for e in entries if not (e.get("reuse") or {}).get("screened")]
        ranked = sorted(evaluated, key=lambda e: (-e["reward"], _job_of(e)))
        seen: set[str] = set()
        distinct = []
        for e in ranked:
            key = self.space.hash(e["genotype"])
            if key not in seen:
                seen.add(key)
                distinct.append(e)
        if not distinct:
            return []
        return [distinct[i % len(distinct)] for i in range(self.params["branches"])]

    # -- parameter sharing ---------------------------------------------------------------
    def _split(self, genotype: Mapping[str, Any], names: list[str]
               ) -> dict[str, tuple[str, list[str]]]:
        """Group state-dict names by sharing key: ``key -> (prefix, names)``."""
        from searchers.epnas.actions import OTHER_KEY

        groups: dict[str, tuple[str, list[str]]] = {}
        claimed: set[str] = set()
        for prefix, key in self.morpher.sharing_keys(genotype):
            mine = [name for name in names if name.startswith(prefix)]
            claimed.update(mine)
            groups[key] = (prefix, mine)
        groups[OTHER_KEY] = ("", [name for name in names if name not in claimed])
        return groups

    def _share(self, genotype: Mapping[str, Any], weights: Mapping[str, Any],
               accuracy: float) -> None:
        """Store a trained model's weights per key; on a clash keep the more accurate one."""
        for key, (prefix, names) in self._split(genotype, sorted(weights)).items():
            if not names:
                continue
            signature = _signature({name[len(prefix):]: weights[name] for name in names})
            variants = self.sharing.setdefault(key, [])
            same = [v for v in variants if v["signature"] == signature]
            if same and accuracy <= same[0]["accuracy"]:
                continue
            tensors = {name[len(prefix):]: weights[name].detach().to("cpu", copy=True)
                       for name in names}
            size = sum(t.numel() * t.element_size() for t in tensors.values())
            if same:
                self._sharing_bytes += size - _nbytes(same[0]["tensors"])
                same[0].update(accuracy=accuracy, tensors=tensors)
            else:
                variants.append({"signature": signature, "accuracy": accuracy,
                                 "tensors": tensors})
                self._sharing_bytes += size
                variants.sort(key=lambda v: -v["accuracy"])
                for dropped in variants[self.params["shared_variants"]:]:
                    self._sharing_bytes -= _nbytes(dropped["tensors"])
                del variants[self.params["shared_variants"]:]
        self._bound_sharing()

    def _bound_sharing(self) -> None:
        """Evict the least accurate variants until the dictionary fits ``sharing_mb``.

        Sizes are tracked as entries come and go, so a result costs a scan of the entries
        (hundreds at paper scale), never a pass over the tensors.
        """
        limit = float(self.params["sharing_mb"]) * 2**20
        while self._sharing_bytes > limit and self.sharing:
            key, index = min(((k, i) for k, vs in self.sharing.items()
                              for i in range(len(vs))),
                             key=lambda ki: (self.sharing[ki[0]][ki[1]]["accuracy"], ki[0]))
            self._sharing_bytes -= _nbytes(self.sharing[key][index]["tensors"])
            del self.sharing[key][index]
            if not self.sharing[key]:
                del self.sharing[key]

    def _inherit_for(self, genotype: Mapping[str, Any]) -> dict[str, Any] | None:
        """A state dict assembled from the dictionary: per key, the closest-shaped variant."""
        if not self.sharing:
            return None
        shapes = self._shapes(genotype)
        inherit: dict[str, Any] = {}
        for key, (prefix, names) in self._split(genotype, sorted(shapes)).items():
            variants = self.sharing.get(key)
            if not variants or not names:
                continue
            wanted = {name[len(prefix):]: shapes[name] for name in names}
            best = min(variants, key=lambda v: (_shape_distance(v["signature"], wanted),
                                                -v["accuracy"]))
            for suffix, tensor in best["tensors"].items():
                if suffix in wanted:
                    inherit[prefix + suffix] = tensor
        return inherit or None

    def _shapes(self, genotype: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        """Parameter/buffer shapes of the built candidate (built on the meta device: free)."""
        import torch

        with torch.device("meta"):
            model = self.space.build(genotype, self.input_shape, self.num_classes)
        return {name: tuple(t.shape) for name, t in model.state_dict().items()}

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update({
            "policy": {k: v.clone() for k, v in self.policy.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "generator": self.generator.get_state(),
            "rng": copy.deepcopy(self.rng.bit_generator.state),
            "baseline": None if self.baseline is None else self.baseline.tolist(),
            "episode_index": self.episode_index,
            "branches": copy.deepcopy(self.branches),
            "branch_rewards": list(self.branch_rewards),
            "branch_jobs": list(self.branch_jobs),
            "episode": copy.deepcopy(self.episode),
            # the tensors themselves, not copies: an entry's tensors are replaced, never changed
            # in place, and the store keeps each array once by content, so a checkpoint writes
            # only the entries that changed since the last one
            "sharing": {key: [dict(v) for v in variants]
                        for key, variants in self.sharing.items()},
            "sharing_active": self.sharing_active,
            "exhausted": self.exhausted,
            "params": dict(self.params),
            "reward_p": (dict(self.reward_p) if isinstance(self.reward_p, Mapping)
                         else self.reward_p),
        })
        return state

    def load_state_dict(self, state: Mapping[str, Any],
                        history: Sequence[Mapping[str, Any]] = ()) -> None:
        super().load_state_dict(state, history)
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.generator.set_state(state["generator"])
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
        self.baseline = None if state["baseline"] is None else np.asarray(state["baseline"])
        self.episode_index = int(state["episode_index"])
        self.branches = copy.deepcopy(state["branches"])
        self.branch_rewards = list(state.get("branch_rewards", []))
        self.branch_jobs = [int(j) for j in state.get("branch_jobs", [])]
        self.episode = copy.deepcopy(state["episode"])
        self.sharing = {key: [{**v, "signature": _as_signature(v["signature"])}
                              for v in variants]
                        for key, variants in state["sharing"].items()}
        self._sharing_bytes = sum(_nbytes(v["tensors"]) for vs in self.sharing.values()
                                  for v in vs)
        self.sharing_active = bool(state["sharing_active"])
        self.exhausted = bool(state.get("exhausted", False))
        self._evaluated = {}
        for told in self.history:  # derived from the history, never stored
            self._evaluated.setdefault(self.space.hash(told["genotype"]), int(told["id"]))
        if "reward_p" in state:
            self.reward_p = (dict(state["reward_p"]) if isinstance(state["reward_p"], Mapping)
                             else float(state["reward_p"]))


def _p_of(reward_p: float | Mapping[str, float], metric: str) -> float:
    """The base penalty of ``metric`` under a ``reward_p`` (one value or per metric)."""
    from searchers.constraints import DEFAULT_REWARD_P

    if isinstance(reward_p, Mapping):
        return float(reward_p.get(metric, DEFAULT_REWARD_P))
    return float(reward_p)


def _job_of(entry: Mapping[str, Any]) -> int:
    """The job whose result an entry holds: its own, or the one it reused."""
    job = entry["job_id"] if entry["job_id"] is not None else entry.get("source_job")
    return int(job) if job is not None else -1


def _signature(tensors: Mapping[str, Any]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    return tuple(sorted((name, tuple(t.shape)) for name, t in tensors.items()))


def _as_signature(value: Any) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """A signature as :func:`_signature` makes it, from its stored (JSON) form."""
    return tuple((str(name), tuple(int(n) for n in shape)) for name, shape in value)


def _nbytes(tensors: Mapping[str, Any]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


def _shape_distance(signature: tuple[tuple[str, tuple[int, ...]], ...],
                    wanted: Mapping[str, tuple[int, ...]]) -> float:
    """How far stored shapes are from wanted ones: sum of |log ratio| of dimensions; a name
    missing on either side counts as a large distance."""
    stored = dict(signature)
    distance = 0.0
    for name in set(stored) | set(wanted):
        a, b = stored.get(name), wanted.get(name)
        if a is None or b is None or len(a) != len(b):
            distance += 10.0
            continue
        distance += sum(abs(math.log(max(x, 1)) - math.log(max(y, 1))) for x, y in zip(a, b))
    return distance
