"""Exactness of the specialization solvers against brute force, and their contract."""

from __future__ import annotations

import numpy as np
import pytest

from searchers.errors import NaswError
from searchers.specialize import layer_importance, loss_table_from_accuracy, solve

METRICS = ("params", "madds", "flops", "bytes")


@pytest.fixture(params=["walk", "passes"])
def exact_path(request, monkeypatch):
    """Run a test through the compiled walk (the default) and through the numpy passes (the
    walk disabled, as when it runs out of nodes): both must be exact."""
    import searchers.specialize as specialize

    if request.param == "passes":
        monkeypatch.setattr(specialize, "_WALK_NODES", 0)
    return request.param


def brute_force(loss, tables, base, constraints):
    """Minimum loss over every choice vector (meet in the middle over two halves), or inf."""
    L = loss.shape[0]
    half = L // 2

    def sums(layers, table):
        total = np.zeros(1)
        for layer in layers:
            total = (total[:, None] + table[layer][None, :]).ravel()
        return total

    first, second = range(half), range(half, L)
    head = {m: sums(first, t) for m, t in tables.items()}
    tail = {m: sums(second, t) for m, t in tables.items()}
    ok = np.ones((len(head["params"]), len(tail["params"])), dtype=bool)
    for metric, op, value in constraints:
        if metric == "intensity":
            used = (base["flops"] + head["flops"][:, None] + tail["flops"][None, :]) - value * (
                base["bytes"] + head["bytes"][:, None] + tail["bytes"][None, :])
            ok &= used <= 0 if op == "<=" else used >= 0
        else:
            used = base[metric] + head[metric][:, None] + tail[metric][None, :]
            ok &= used <= value if op == "<=" else used >= value
    total = sums(first, loss)[:, None] + sums(second, loss)[None, :]
    return float(np.where(ok, total, np.inf).min())


def random_instance(rng, layers=6, choices=12):
    """Integer costs (sums are exact in float64, so brute force and DP agree bit for bit)."""
    accuracy = rng.random((layers, choices))
    loss = loss_table_from_accuracy(accuracy)
    tables = {m: rng.integers(1, 1000, size=(layers, choices)).astype(float) for m in METRICS}
    base = {m: float(rng.integers(0, 100)) for m in METRICS}
    picked = rng.choice(["params", "madds", "flops", "intensity"], size=rng.integers(1, 4),
                        replace=False)
    constraints = []
    for metric in picked:
        op = "<=" if rng.random() < 0.7 else ">="
        if metric == "intensity":
            value = float(rng.choice([1, 2]))
        else:
            low = base[metric] + tables[metric].min(axis=1).sum()
            high = base[metric] + tables[metric].max(axis=1).sum()
            value = float(rng.integers(int(low), int(high) + 1))
        constraints.append((str(metric), op, value))
    return loss, tables, base, constraints


def test_exact_solver_equals_brute_force_on_200_random_6x12_tables(exact_path) -> None:
    rng = np.random.default_rng(2024)
    feasible_count = 0
    for _ in range(200):
        loss, tables, base, constraints = random_instance(rng)
        result = solve(loss, tables, constraints, base=base)
        expected = brute_force(loss, tables, base, constraints)
        assert result["optimal"] is True
        if exact_path == "walk":  # proven by the walk (or before it: a bound, no rows)
            assert result["method"] in ("walk", "dual", "lp", "bounds", "argmin")
        else:
            assert result["method"] != "walk"
        if np.isinf(expected):
            assert result["feasible"] is False
            assert result["choices"] is None
            continue
        feasible_count += 1
        assert result["feasible"] is True
        assert result["loss"] == pytest.approx(expected, abs=1e-9)
        choices = result["choices"]
        assert result["loss"] == pytest.approx(loss[np.arange(6), choices].sum(), abs=1e-12)
        for metric, op, value in constraints:
            used = result["costs"][metric]
            assert used <= value + 1e-9 if op == "<=" else used >= value - 1e-9
    # the generator must exercise both outcomes
    assert 100 < feasible_count < 200


def _preset_tables():
    from searchers.spaces import get_space

    return get_space("mbconv", preset="ponas-imagenet").cost_tables()


def _structured_loss(rng, tables):
    """A paper-like T_d: per-layer importance times the log capacity deficit, plus noise."""
    L, C = tables["madds"].shape
    importance = rng.gamma(2.0, 0.01, size=L)
    deficit = np.log(tables["madds"] / tables["madds"].max(axis=1, keepdims=True))
    accuracy = importance[:, None] * (deficit + rng.normal(0, 0.3, size=(L, C)))
    return loss_table_from_accuracy(accuracy)


def _fraction(base, tables, metric, fraction):
    low = base[metric] + tables[metric].min(axis=1).sum()
    high = base[metric] + tables[metric].max(axis=1).sum()
    return low + (high - low) * fraction


def test_exact_is_never_worse_than_the_ga_on_the_19x12_preset() -> None:
    base, tables = _preset_tables()
    assert tables["params"].shape == (19, 12)
    rng = np.random.default_rng(7)
    for trial in range(6):
        loss = _structured_loss(rng, tables)
        constraints = [("params", "<=", _fraction(base, tables, "params", rng.uniform(.4, .7))),
                       ("madds", "<=", _fraction(base, tables, "madds", rng.uniform(.3, .6))),
                       ("flops", ">=", _fraction(base, tables, "flops", 0.1))][: 1 + trial % 3]
        exact = solve(loss, tables, constraints, base=base)
        ga = solve(loss, tables, constraints, base=base, solver="ga", seed=trial,
                   ga={"generations": 300})
        assert exact["feasible"] and exact["optimal"]
        assert ga["optimal"] is False and ga["solver"] == "ga"
        if ga["feasible"]:
            assert exact["loss"] <= ga["loss"] + 1e-12
        for metric, op, value in constraints:
            used = exact["costs"][metric]
            assert used <= value if op == "<=" else used >= value


def test_costs_are_base_plus_the_chosen_entries_and_match_the_space() -> None:
    from searchers.spaces import get_space

    space = get_space("mbconv", preset="ponas-digits")
    base, tables = space.cost_tables()
    loss = _structured_loss(np.random.default_rng(0), tables)
    budget = _fraction(base, tables, "madds", 0.5)
    result = solve(loss, tables, [f"madds<={budget}"], base=base)
    genotype = {"space": "mbconv", "preset": "ponas-digits", "choices": result["choices"]}
    costs = space.costs(genotype)
    for metric in ("params", "madds", "flops"):
        assert result["costs"][metric] == pytest.approx(costs[metric])
    assert result["costs"]["intensity"] == pytest.approx(costs["intensity"])
    assert costs["madds"] <= budget


def test_infeasible_reports_the_reachable_extremes() -> None:
    loss = np.zeros((3, 2))
    tables = {"params": np.array([[1.0, 5.0], [2.0, 6.0], [3.0, 7.0]]),
              "madds": np.array([[10.0, 50.0], [20.0, 60.0], [30.0, 70.0]])}
    result = solve(loss, tables, ["params<=5", "madds>=100"], base={"params": 1, "madds": 0})
    assert result["feasible"] is False and result["choices"] is None
    assert result["optimal"] is True  # the exact solver proved there is no solution
    assert result["min_costs"] == {"params": 7.0, "madds": 60.0}
    assert result["max_costs"] == {"madds": 180.0}


def test_intensity_extremes_are_exact() -> None:
    rng = np.random.default_rng(3)
    tables = {m: rng.integers(1, 50, size=(4, 3)).astype(float) for m in ("flops", "bytes")}
    base = {"flops": 5.0, "bytes": 7.0}
    grids = np.array(np.meshgrid(*[range(3)] * 4, indexing="ij")).reshape(4, -1).T
    ratios = [(base["flops"] + tables["flops"][range(4), g].sum())
              / (base["bytes"] + tables["bytes"][range(4), g].sum()) for g in grids]
    result = solve(np.zeros((4, 3)), tables, ["intensity>=1000"], base=base)
    assert result["feasible"] is False
    assert result["min_costs"]["intensity"] == pytest.approx(min(ratios))
    assert result["max_costs"]["intensity"] == pytest.approx(max(ratios))


def test_without_constraints_every_layer_takes_its_best_candidate() -> None:
    accuracy = np.random.default_rng(1).random((5, 4))
    loss = loss_table_from_accuracy(accuracy)
    result = solve(loss, {"params": np.ones((5, 4))}, [])
    assert result["choices"] == list(accuracy.argmax(axis=1))
    assert result["loss"] == 0.0 and result["optimal"]


def test_latency_table_and_lower_bounds() -> None:
    loss = np.array([[0.0, 0.1, 0.3], [0.0, 0.2, 0.5]])
    latency = np.array([[3.0, 2.0, 1.0], [4.0, 2.0, 1.0]])
    result = solve(loss, {"latency_ms": latency}, [("latency_ms", "<=", 4.5)],
                   base={"latency_ms": 0.5})
    # options within 4.5 - 0.5 = 4: (1,1)=0.3, (0,2)=0.5, (2,1)=0.5, (1,2)=0.6 ...
    assert result["choices"] == [1, 1] and result["loss"] == pytest.approx(0.3)
    assert result["costs"]["latency_ms"] == pytest.approx(4.5)
    fast_is_good = np.array([[0.25, 0.1, 0.0], [0.6, 0.2, 0.0]])
    lower = solve(fast_is_good, {"latency_ms": latency},
                  [{"metric": "latency_ms", "op": ">=", "value": 4.5}], base={"latency_ms": 0.5})
    # sums >= 4: (0,2) loss 0.25 beats (1,1) 0.3 and (2,0) 0.6
    assert lower["choices"] == [0, 2] and lower["costs"]["latency_ms"] == pytest.approx(4.5)


def test_a_capped_frontier_still_ends_proven_optimal(monkeypatch) -> None:
    import searchers.specialize as specialize

    monkeypatch.setattr(specialize, "_WALK_NODES", 0)  # the numpy passes' frontier cap
    base, tables = _preset_tables()
    loss = _structured_loss(np.random.default_rng(5), tables)
    constraints = [("params", "<=", _fraction(base, tables, "params", 0.5)),
                   ("madds", "<=", _fraction(base, tables, "madds", 0.45))]
    capped = solve(loss, tables, constraints, base=base, max_states=1)
    full = solve(loss, tables, constraints, base=base)
    assert full["optimal"] is True and capped["optimal"] is True
    assert capped["feasible"] and capped["loss"] == pytest.approx(full["loss"], abs=1e-9)


def test_bad_input_names_the_field() -> None:
    tables = {"params": np.ones((2, 3))}
    with pytest.raises(NaswError, match="solver"):
        solve(np.zeros((2, 3)), tables, [], solver="annealing")
    with pytest.raises(NaswError, match="latency_ms"):
        solve(np.zeros((2, 3)), tables, ["latency_ms<=8"])
    with pytest.raises(NaswError, match="cost_tables.params"):
        solve(np.zeros((2, 3)), {"params": np.ones((3, 3))}, [])
    with pytest.raises(NaswError, match="intensity"):
        solve(np.zeros((2, 3)), tables, ["intensity>=2"])
    with pytest.raises(NaswError, match="ga.population_size"):
        solve(np.zeros((2, 3)), tables, [], solver="ga", ga={"population_size": 3})


def test_ga_is_deterministic_and_feasible() -> None:
    base, tables = _preset_tables()
    loss = _structured_loss(np.random.default_rng(9), tables)
    constraints = [("madds", "<=", _fraction(base, tables, "madds", 0.5))]
    first = solve(loss, tables, constraints, base=base, solver="ga", seed=4, ga={"generations": 50})
    again = solve(loss, tables, constraints, base=base, solver="ga", seed=4, ga={"generations": 50})
    assert first["choices"] == again["choices"] and first["feasible"]
    assert first["costs"]["madds"] <= constraints[0][2]


def test_loss_table_and_importance_follow_the_paper() -> None:
    accuracy = np.array([[0.9, 0.8, 0.85], [0.7, 0.7, 0.6]])
    loss = loss_table_from_accuracy(accuracy)
    np.testing.assert_allclose(loss, [[0.0, 0.1, 0.05], [0.0, 0.0, 0.1]])
    np.testing.assert_allclose(layer_importance(loss), [0.1, 0.1])


def test_exact_on_tiny_float_tables_with_ties_and_degenerate_shapes(exact_path) -> None:
    """Non-integer costs, tied losses, zero-cost rows, L and C down to 1, no constraints."""
    import itertools

    rng = np.random.default_rng(11)
    for _ in range(300):
        L, C = int(rng.integers(1, 5)), int(rng.integers(1, 6))
        loss = np.round(rng.random((L, C)) * rng.choice([0, 1, 100]), 1)
        tables = {m: rng.random((L, C)) * 10 for m in METRICS}
        tables["madds"][rng.random((L, C)) < 0.3] = 0.0
        base = {m: float(rng.random() * 5) for m in METRICS}
        constraints = []
        for metric in rng.choice(["params", "madds", "flops", "intensity"],
                                 size=rng.integers(0, 4), replace=False):
            op = str(rng.choice(["<=", ">="]))
            value = float(rng.uniform(0.5, 2)) if metric == "intensity" else float(
                base[metric] + rng.uniform(0.01, 10 * L))
            constraints.append((str(metric), op, value))
        best = np.inf
        for x in itertools.product(range(C), repeat=L):
            costs = {m: base[m] + t[np.arange(L), list(x)].sum() for m, t in tables.items()}
            ok = True
            for metric, op, value in constraints:
                used = (costs["flops"] - value * costs["bytes"] if metric == "intensity"
                        else costs[metric] - value)
                ok &= bool(used <= 1e-9) if op == "<=" else bool(used >= -1e-9)
            if ok:
                best = min(best, loss[np.arange(L), list(x)].sum())
        result = solve(loss, tables, constraints, base=base)
        assert result["feasible"] == bool(np.isfinite(best))
        if result["feasible"]:
            assert result["loss"] == pytest.approx(best, abs=1e-9)


# -- bands, opposing bounds, full-size tables: brute force and a MILP as oracles -------------------
def _milp_loss(loss, tables, base, constraints):
    """The optimum by HiGHS (0-1 program, optimality gap 0), or None when infeasible."""
    from searchers.constraints import parse_constraints
    from searchers.specialize import _Problem, _solve_milp

    problem = _Problem(loss, tables, parse_constraints(constraints), base)
    choices, proven = _solve_milp(problem, 120.0)
    assert proven, "the oracle must prove its answer"
    return None if choices is None else problem.loss_of(choices)


def _kinds(rng, base, tables):
    """Every constraint type: upper, lower, opposing bounds, bands (relative, absolute)."""
    p = _fraction(base, tables, "params", rng.uniform(.15, .8))
    m = _fraction(base, tables, "madds", rng.uniform(.15, .8))
    return {
        "upper-1": [("madds", "<=", m)],
        "upper-2": [("params", "<=", p), ("madds", "<=", m)],
        "upper-3": [("params", "<=", p), ("madds", "<=", m), ("intensity", ">=", 4.0)],
        "lower-1": [("params", ">=", p)],
        "opposing": [("params", ">=", p), ("madds", "<=", _fraction(base, tables, "madds", .7))],
        "band-1": [("params", ">=", p * .995), ("params", "<=", p * 1.005)],
        "bands-2": [("params", ">=", p * .995), ("params", "<=", p * 1.005),
                    ("madds", ">=", m * .997), ("madds", "<=", m * 1.003)],
        "bands-abs": [("params", ">=", p - .05e6), ("params", "<=", p + .05e6),
                      ("madds", ">=", m - .5e6), ("madds", "<=", m + .5e6)],
    }


def _check_against(result, expected, tables, base, constraints):
    assert result["optimal"] is True
    if expected is None:
        assert result["feasible"] is False  # proven infeasible, and truly so
        return
    assert result["feasible"], "a false 'infeasible'"
    assert result["loss"] == pytest.approx(expected, abs=1e-9)
    for metric, op, value in constraints:
        used = result["costs"][metric]
        assert used <= value * (1 + 1e-12) if op == "<=" else used >= value * (1 - 1e-12)


@pytest.mark.parametrize("preset", ["ponas-cifar", "ponas-imagenet"])
def test_exact_equals_the_milp_on_preset_tables_for_every_constraint_type(preset, exact_path) -> None:
    from searchers.spaces import get_space

    base, tables = get_space("mbconv", preset=preset).cost_tables()
    rng = np.random.default_rng(19)
    for _ in range(2):
        loss = _structured_loss(rng, tables)
        for constraints in _kinds(rng, base, tables).values():
            result = solve(loss, tables, constraints, base=base)
            expected = _milp_loss(loss, tables, base, constraints)
            _check_against(result, expected, tables, base, constraints)


def test_exact_equals_the_milp_on_random_full_size_and_60_layer_tables(exact_path) -> None:
    rng = np.random.default_rng(23)
    for trial in range(8):
        L = 60 if trial % 4 == 3 else 19
        loss = loss_table_from_accuracy(rng.random((L, 12)) * rng.gamma(2, .01, (L, 1)))
        tables = {m: rng.integers(1_000, 400_000, size=(L, 12)).astype(float) for m in METRICS}
        base = {m: float(rng.integers(0, 100_000)) for m in METRICS}
        p = _fraction(base, tables, "params", rng.uniform(.2, .8))
        m = _fraction(base, tables, "madds", rng.uniform(.2, .8))
        constraints = [
            [("params", "<=", p), ("madds", "<=", m)],
            [("params", ">=", p * .99), ("params", "<=", p * 1.01), ("madds", "<=", m)],
            [("params", ">=", p), ("madds", "<=", m * 1.2), ("flops", "<=",
                                                             _fraction(base, tables, "flops", .7))],
            [("params", ">=", p * .995), ("params", "<=", p * 1.005), ("madds", ">=", m * .99),
             ("madds", "<=", m * 1.01)],
        ][trial % 4]
        result = solve(loss, tables, constraints, base=base)
        _check_against(result, _milp_loss(loss, tables, base, constraints), tables, base,
                       constraints)


def test_bands_and_opposing_bounds_equal_brute_force_on_small_tables(exact_path) -> None:
    rng = np.random.default_rng(29)
    seen_infeasible = seen_feasible = 0
    for _ in range(40):
        loss = loss_table_from_accuracy(rng.random((5, 12)))
        tables = {m: rng.integers(1, 1000, size=(5, 12)).astype(float) for m in METRICS}
        base = {m: float(rng.integers(0, 100)) for m in METRICS}
        p = _fraction(base, tables, "params", rng.uniform(.1, .9))
        m = _fraction(base, tables, "madds", rng.uniform(.1, .9))
        width = rng.choice([2.0, 20.0, 200.0])
        constraints = [("params", ">=", p - width), ("params", "<=", p + width)]
        if rng.random() < 0.5:
            constraints += [("madds", ">=", m - width), ("madds", "<=", m + width)]
        else:
            constraints += [("madds", "<=" if rng.random() < .5 else ">=", m)]
        expected = brute_force(loss, tables, base, constraints)
        result = solve(loss, tables, constraints, base=base)
        assert result["optimal"] is True
        assert result["feasible"] == bool(np.isfinite(expected))
        if result["feasible"]:
            seen_feasible += 1
            assert result["loss"] == pytest.approx(expected, abs=1e-9)
        else:
            seen_infeasible += 1
    assert seen_feasible > 15 and seen_infeasible > 3


def test_an_overflowing_frontier_falls_back_to_highs_and_stays_proven(monkeypatch) -> None:
    import searchers.specialize as specialize

    monkeypatch.setattr(specialize, "_WALK_NODES", 0)  # the numpy passes' frontier cap
    base, tables = _preset_tables()
    rng = np.random.default_rng(31)
    loss = _structured_loss(rng, tables)
    constraints = _kinds(rng, base, tables)["bands-2"]
    capped = solve(loss, tables, constraints, base=base, max_states=0)
    full = solve(loss, tables, constraints, base=base)
    assert capped["method"] == "milp" and capped["optimal"] is True
    assert capped["feasible"] == full["feasible"]
    if full["feasible"]:
        assert capped["loss"] == pytest.approx(full["loss"], abs=1e-9)


@pytest.mark.parametrize("memo_slots", [1 << 16, 4])
def test_repeated_layers_and_equal_sums_equal_brute_force(monkeypatch, exact_path,
                                                         memo_slots) -> None:
    """Stacked networks repeat layer shapes, so many partial choices have equal usage and the
    solver keeps only the cheapest of each (the passes' merge, the walk's memo; a memo of 4
    slots overwrites entries all the time): that must never lose the optimum."""
    import searchers.specialize as specialize

    if exact_path == "passes" and memo_slots == 4:
        pytest.skip("the memo belongs to the walk")
    monkeypatch.setattr(specialize, "_DOMINANCE_FROM", 0)  # merge even small frontiers
    monkeypatch.setattr(specialize._WalkMemo, "SLOTS", memo_slots)
    rng = np.random.default_rng(37)
    checked = 0
    for _ in range(24):
        layer_costs = {m: rng.integers(1, 6, size=(3, 8)).astype(float) for m in METRICS}
        shape_of = rng.integers(0, 3, size=7)  # 7 layers drawn from 3 shapes
        tables = {m: t[shape_of] for m, t in layer_costs.items()}
        loss = loss_table_from_accuracy(rng.random((7, 8)))
        base = {m: 0.0 for m in METRICS}
        p = _fraction(base, tables, "params", rng.uniform(.2, .8))
        m = _fraction(base, tables, "madds", rng.uniform(.2, .8))
        constraints = [("params", ">=", p - 1), ("params", "<=", p + 1),
                       ("madds", ">=", m - 2), ("madds", "<=", m + 2)]
        expected = brute_force(loss, tables, base, constraints)
        result = solve(loss, tables, constraints, base=base, max_states=100_000)
        assert result["optimal"] is True
        assert result["feasible"] == bool(np.isfinite(expected))
        if result["feasible"]:
            checked += 1
            assert result["loss"] == pytest.approx(expected, abs=1e-9)
    assert checked > 15


@pytest.mark.parametrize("sides", [("<=",), (">=",), (">=", "<=")])
def test_one_row_lp_prices_equal_highs(sides) -> None:
    """One row's LP prices are read off its hull instead of asking HiGHS: same value."""
    from scipy.optimize import linprog

    import searchers.specialize as specialize
    from searchers.constraints import parse_constraints

    rng = np.random.default_rng(41)
    for _ in range(10):
        loss = loss_table_from_accuracy(rng.random((9, 12)))
        tables = {"params": rng.integers(1, 1000, size=(9, 12)).astype(float)}
        base = {"params": 0.0}
        target = _fraction(base, tables, "params", rng.uniform(.05, .95))
        bounds = {"<=": target, ">=": target - 300.0}
        constraints = [("params", op, bounds[op] if len(sides) == 2 else target)
                       for op in sides]
        problem = specialize._Problem(loss, tables, parse_constraints(constraints), base)
        dual = specialize._one_row_lp_dual(problem)
        row = problem.A[0].ravel()
        a_ub, b_ub = [], []
        if np.isfinite(problem.hi[0]):
            a_ub.append(row)
            b_ub.append(problem.hi[0])
        if np.isfinite(problem.lo[0]):
            a_ub.append(-row)
            b_ub.append(-problem.lo[0])
        lp = linprog(loss.ravel(), A_ub=np.array(a_ub), b_ub=b_ub,
                     A_eq=np.kron(np.eye(9), np.ones((1, 12))), b_eq=np.ones(9),
                     bounds=(0, 1), method="highs")
        assert dual.value == pytest.approx(lp.fun, abs=1e-9)


def test_lp_prices_through_scipys_highs_binding_equal_linprog(monkeypatch) -> None:
    """The fast route to HiGHS and the public ``linprog`` give the same LP bound (and the
    fallback works when the private binding is gone)."""
    import searchers.specialize as specialize
    from searchers.constraints import parse_constraints

    base, tables = _preset_tables()
    rng = np.random.default_rng(43)
    for kind in ("bands-2", "bands-abs", "opposing", "upper-3"):
        loss = _structured_loss(rng, tables)
        problem = specialize._Problem(loss, tables,
                                      parse_constraints(_kinds(rng, base, tables)[kind]), base)
        fast, fast_infeasible = specialize._lp_dual(problem)
        with monkeypatch.context() as patched:
            patched.setattr(specialize, "_highs_lp_dual",
                            lambda problem: (_ for _ in ()).throw(ImportError("moved")))
            slow, slow_infeasible = specialize._lp_dual(problem)
        assert fast_infeasible == slow_infeasible
        if fast is not None:
            assert fast.value == pytest.approx(slow.value, abs=1e-9)


def test_integer_infeasible_bands_end_proven_with_any_cap(monkeypatch) -> None:
    """Bands the LP relaxation can meet but no choice vector can: with any frontier cap the
    rising ceiling ends (no endless bisection) with a proof of infeasibility."""
    import searchers.specialize as specialize

    monkeypatch.setattr(specialize, "_WALK_NODES", 0)  # the numpy passes' frontier cap
    for loss, tables, base, constraints in _integer_infeasible_bands(count=4):
        for cap in (1, 2_000):  # 1: every pass overflows, bisection ends in HiGHS
            result = solve(loss, tables, constraints, base=base, max_states=cap)
            assert result["feasible"] is False and result["optimal"] is True


def _integer_infeasible_bands(count: int):
    """The first ``count`` random 5 x 12 tables whose two narrow bands the LP relaxation can
    meet but no choice vector can (checked by brute force)."""
    rng = np.random.default_rng(47)
    seen = 0
    for _ in range(60):
        loss = loss_table_from_accuracy(rng.random((5, 12)))
        tables = {m: rng.integers(1, 1000, size=(5, 12)).astype(float) for m in METRICS}
        base = {m: 0.0 for m in METRICS}
        p = _fraction(base, tables, "params", rng.uniform(.2, .8))
        m = _fraction(base, tables, "madds", rng.uniform(.2, .8))
        constraints = [("params", ">=", p - 2), ("params", "<=", p + 2),
                       ("madds", ">=", m - 2), ("madds", "<=", m + 2)]
        if np.isfinite(brute_force(loss, tables, base, constraints)):
            continue
        yield loss, tables, base, constraints
        seen += 1
        if seen == count:
            return
    raise AssertionError(f"only {seen} integer-infeasible tables in 60 draws")


def test_a_walk_out_of_nodes_hands_over_to_the_passes(monkeypatch) -> None:
    """The walk's node budget is a hand-over, not an answer: with 10 nodes the numpy passes
    (or HiGHS) finish the job, with the same proven optimum."""
    import searchers.specialize as specialize

    base, tables = _preset_tables()
    rng = np.random.default_rng(53)
    handed_over = 0
    for kind in ("bands-2", "opposing", "upper-2", "bands-abs"):
        loss = _structured_loss(rng, tables)
        constraints = _kinds(rng, base, tables)[kind]
        walked = solve(loss, tables, constraints, base=base)
        with monkeypatch.context() as patched:
            patched.setattr(specialize, "_WALK_NODES", 10)
            handed = solve(loss, tables, constraints, base=base)
        assert walked["optimal"] and handed["optimal"]
        assert walked["feasible"] == handed["feasible"]
        handed_over += handed["method"] in ("dp", "milp")
        if walked["feasible"]:
            assert handed["loss"] == pytest.approx(walked["loss"], abs=1e-9)
    # (a later try may still finish in 10 nodes on what the earlier ones proved)
    assert handed_over >= 2


def test_the_hulls_are_the_lp_relaxation_of_each_suffix() -> None:
    """The compiled hull of a suffix of layers, at any usage, equals the LP relaxation of
    "complete those layers with exactly that usage" (HiGHS)."""
    from scipy.optimize import linprog

    from searchers import _specialize_kernel as kernel

    rng = np.random.default_rng(59)
    L, C = 5, 7
    row = rng.integers(0, 50, size=(1, L, C)).astype(float)
    loss = rng.random((L, C))
    counts = rng.integers(1, C + 1, size=L)
    choices = np.array([np.concatenate([rng.permutation(C)]) for _ in range(L)])
    xs, ys, start, length, best = kernel.build_hulls(row, loss, choices, counts)
    for j in range(L + 1):
        layers = range(j, L)
        n = sum(int(counts[i]) for i in layers)
        hull_x = xs[start[0, j]: start[0, j] + length[0, j]]
        hull_y = ys[start[0, j]: start[0, j] + length[0, j]]
        assert np.all(np.diff(hull_x) > 0) or length[0, j] == 1
        if n == 0:
            assert length[0, j] == 1 and hull_x[0] == 0 and hull_y[0] == 0
            continue
        cost = np.concatenate([loss[i, choices[i, :counts[i]]] for i in layers])
        usage = np.concatenate([row[0, i, choices[i, :counts[i]]] for i in layers])
        convexity = np.zeros((L - j, n))
        at = 0
        for k, i in enumerate(layers):
            convexity[k, at: at + counts[i]] = 1
            at += counts[i]
        for target in np.linspace(hull_x[0], hull_x[-1], 9):
            lp = linprog(cost, A_eq=np.vstack([convexity, usage]),
                         b_eq=np.concatenate([np.ones(L - j), [target]]), bounds=(0, 1),
                         method="highs")
            assert lp.status == 0
            assert np.interp(target, hull_x, hull_y) == pytest.approx(lp.fun, abs=1e-9)
        assert np.interp(best[0, j], hull_x, hull_y) == pytest.approx(hull_y.min(), abs=1e-12)


def test_the_walks_memo_merges_equal_usage_exactly() -> None:
    """The walk alone, without any loss bound (zero reduced costs, no hull rows, no ceiling):
    the memo of (depth, usage) is then what prunes, on tables whose layers repeat three
    shapes. It must keep the optimum (the cheapest of equal usage) and prune a lot."""
    from searchers import _specialize_kernel as kernel

    rng = np.random.default_rng(61)
    checked = 0
    for _ in range(12):
        shapes = {m: rng.integers(1, 6, size=(3, 8)).astype(float) for m in ("params", "madds")}
        shape_of = rng.integers(0, 3, size=7)
        tables = {m: t[shape_of] for m, t in shapes.items()}
        loss = loss_table_from_accuracy(rng.random((7, 8)))
        base = {"params": 0.0, "madds": 0.0}
        p = _fraction(base, tables, "params", rng.uniform(.3, .7))
        m = _fraction(base, tables, "madds", rng.uniform(.3, .7))
        constraints = [("params", ">=", p - 2), ("params", "<=", p + 2),
                       ("madds", ">=", m - 2), ("madds", "<=", m + 2)]
        expected = brute_force(loss, tables, base, constraints)
        A = np.stack([tables["params"], tables["madds"]])
        choices = np.tile(np.arange(8), (7, 1))
        counts = np.full(7, 8)
        no_rows = np.zeros((0, 7, 8))
        xs, ys, start, length, best = kernel.build_hulls(no_rows, loss, choices, counts)
        nodes = {}
        for slots in (1 << 12, 1):
            memo = (np.zeros((slots, 3)), np.zeros(slots), np.zeros(slots, dtype=np.int64), 1)
            out, found_loss, found, nodes[slots] = kernel.branch_and_bound(
                loss, A, np.zeros((7, 8)), 0.0, choices, counts,
                np.array([p - 2, m - 2]), np.array([p + 2, m + 2]), np.zeros((0, 2)),
                np.zeros(0), np.zeros(0), xs, ys, start, length, best, np.inf, np.inf,
                10**7, *memo)
            assert found == bool(np.isfinite(expected))
            if found:
                assert found_loss == pytest.approx(expected, abs=1e-9)
                assert loss[np.arange(7), out].sum() == pytest.approx(found_loss, abs=1e-12)
        checked += bool(np.isfinite(expected))
        assert nodes[1 << 12] < nodes[1]  # one slot: the memo hardly ever holds a match
    assert checked >= 8


def test_integer_infeasible_bands_are_proven_by_the_walk() -> None:
    """The same LP-feasible but integer-infeasible bands, with the default path: the walk
    (its rows' and surrogates' reach cuts) proves them infeasible without HiGHS."""
    for loss, tables, base, constraints in _integer_infeasible_bands(count=4):
        result = solve(loss, tables, constraints, base=base)
        assert result["feasible"] is False and result["optimal"] is True
        assert result["method"] in ("walk", "dual", "lp")
