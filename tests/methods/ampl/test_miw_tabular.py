"""TD-DICE on a finite MDP, where the true ratio w* = d_pi / d_pi_b is known exactly.

(a) The exact operator T of the paper's Eq. (9) has w* as its fixed point and its iterates
    converge to it (Proposition 2).
(b) The sample-based loss `miw.td_dice_loss`, minimised by Adam on a tabular w, drives the
    fixed-point residual down. How close w gets to w* is measured and printed (run with -s,
    or `python tests/test_miw_tabular.py` for a sweep over seeds); only loose bounds are asserted.
(c) `td_dice_multi_loss` against K random test functions identifies w* on every MDP; the sweep
    ends with a table of TD-DICE with Q^pi vs td_dice_multi vs w = 1 (`--table`: the table only;
    `python -m tests.methods.ampl.test_miw_tabular` runs it against this checkout's package).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ampl_jax.methods.ampl.miw import (constrained_direction, random_test_functions, td_dice_loss, td_dice_multi_loss,
                                       with_constant)


@pytest.fixture(autouse=True, scope="module")
def _optimised(optimised_programs):
    """Thousands of steps of a few small programs: here optimised code repays its compile."""


S, A = 6, 3


class MDP(NamedTuple):
    P: np.ndarray  # [S, A, S] transition probabilities
    mu0: np.ndarray  # [S]
    pi_b: np.ndarray  # [S, A] behaviour policy
    pi: np.ndarray  # [S, A] target policy, a mixture of pi_b and another policy


def make_mdp(seed: int, eps: float = 0.3) -> MDP:
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(S), size=(S, A))
    mu0 = rng.dirichlet(np.ones(S))
    pi_b = rng.dirichlet(2.0 * np.ones(A), size=S)
    pi = (1.0 - eps) * pi_b + eps * rng.dirichlet(np.ones(A), size=S)
    return MDP(P, mu0, pi_b, pi)


def sa_transition(P: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """[(s,a), (s',a')] = P(s'|s,a) pi(a'|s'): the state-action chain of policy pi."""
    return np.einsum("sat,tb->satb", P, pi).reshape(S * A, S * A)


def occupancy(mdp: MDP, pi: np.ndarray, gamma: float) -> np.ndarray:
    """d_pi(s,a) = (1 - gamma) sum_t gamma^t Pr(s_t = s, a_t = a), by one linear solve."""
    p_pi = np.einsum("sa,sat->st", pi, mdp.P)
    rho = np.linalg.solve(np.eye(S) - gamma * p_pi.T, (1.0 - gamma) * mdp.mu0)
    return rho[:, None] * pi


def q_values(mdp: MDP, pi: np.ndarray, reward: np.ndarray, gamma: float) -> np.ndarray:
    m = sa_transition(mdp.P, pi)
    return np.linalg.solve(np.eye(S * A) - gamma * m, reward.reshape(-1)).reshape(S, A)


def td_operator(w: np.ndarray, mdp: MDP, gamma: float) -> np.ndarray:
    """(T w)(s',a') = [(1-g) mu0(s') pi(a'|s') + g sum_sa P(s'|s,a) pi(a'|s') d_b(s,a) w(s,a)] / d_b(s',a')."""
    d_b = occupancy(mdp, mdp.pi_b, gamma)
    flow = np.einsum("sat,tb,sa->tb", mdp.P, mdp.pi, d_b * w)
    return ((1.0 - gamma) * mdp.mu0[:, None] * mdp.pi + gamma * flow) / d_b


def true_ratio(mdp: MDP, gamma: float) -> np.ndarray:
    return occupancy(mdp, mdp.pi, gamma) / occupancy(mdp, mdp.pi_b, gamma)


def fixed_point_residual(w: np.ndarray, mdp: MDP, gamma: float) -> np.ndarray:
    """d_b * (w - T w): the population lhs - rhs of Eq. (9) per (s,a), with w' = w."""
    return occupancy(mdp, mdp.pi_b, gamma) * (w - td_operator(w, mdp, gamma))


# --- (a) the exact operator -------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.9, 0.99])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_occupancy_matches_power_series(seed, gamma):
    mdp = make_mdp(seed)
    m = sa_transition(mdp.P, mdp.pi)
    x = (mdp.mu0[:, None] * mdp.pi).reshape(-1)  # Pr(s_0, a_0)
    total = np.zeros(S * A)
    for t in range(int(40 / (1 - gamma))):
        total += (1 - gamma) * gamma**t * x
        x = m.T @ x
    d = occupancy(mdp, mdp.pi, gamma)
    np.testing.assert_allclose(total, d.reshape(-1), atol=1e-12)
    assert d.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("gamma", [0.9, 0.99])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_true_ratio_is_fixed_point_and_iterates_converge(seed, gamma):
    mdp = make_mdp(seed)
    w_star = true_ratio(mdp, gamma)
    np.testing.assert_allclose(td_operator(w_star, mdp, gamma), w_star, rtol=0, atol=1e-12)
    # E_{d_b}[w*] = 1: the ratio of two distributions.
    assert np.sum(occupancy(mdp, mdp.pi_b, gamma) * w_star) == pytest.approx(1.0)

    # T is affine with linear part D_b^-1 (g M^T) D_b, similar to g M^T (M row-stochastic),
    # so its spectral radius is exactly gamma: iterates converge geometrically.
    d_b = occupancy(mdp, mdp.pi_b, gamma).reshape(-1)
    lin = gamma * (sa_transition(mdp.P, mdp.pi).T * d_b[None, :]) / d_b[:, None]
    assert np.max(np.abs(np.linalg.eigvals(lin))) == pytest.approx(gamma, abs=1e-9)

    w = np.ones((S, A))
    for _ in range(int(30 / (1 - gamma))):
        w = td_operator(w, mdp, gamma)
    assert np.max(np.abs(w - w_star)) < 1e-6


# --- (b) the sample-based loss -----------------------------------------------------------------


def _w_of(theta: jax.Array, alpha: float = 0.5) -> jax.Array:
    """The network head (softplus(x) + 1e-8)^alpha, here on a table."""
    return (jax.nn.softplus(theta) + 1e-8) ** alpha


def train_tabular_w(
    mdp: MDP,
    gamma: float,
    q_table: np.ndarray | None,
    key: jax.Array,
    **kw,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise td_dice_loss over a table w(s,a) with fresh samples every step (`train_tabular_many`
    for one case). Returns the final w [S, A] and the per-step maximum constraint multiplier."""
    ws, lams = train_tabular_many([(mdp, gamma, q_table, key)], **kw)
    return ws[0], lams[0]


def train_tabular_many(
    cases: list[tuple[MDP, float, np.ndarray | None, jax.Array]],
    steps: int = 4000,
    batch: int = 1024,
    mu0_batch: int = 1024,
    lr: float = 1e-2,
    tau: float = 0.05,
    mean_bound: float | None = None,
    split_batch: bool = False,
    multi: dict | None = None,
    w_init: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise the loss over a table w(s,a) for every case (mdp, gamma, q_table, key) at once:
    one compiled, vmapped program per setting, however many MDPs.

    q_table: a fixed test function Q(s,a); None draws a fresh N(0, 1) table every step (then
    every case must pass None).
    mean_bound: use `constrained_direction` for mean(w) <= bound.
    multi: td_dice_multi_loss instead, against `random_test_functions` of x(s,a) = [onehot(s),
    onehot(a)] with keys num, kind, scale, resample (fresh functions each step, else one fixed
    draw), constant (the constant f_0 = 1 prepended, `with_constant`), mass_penalty (the loss's
    pull of E_b[w] to the mass the constant's equation implies, `miw.mass_gap`) and with_q
    (q_table / mean |q| appended as one more test function).
    w_init: the table's starting value, everywhere (and its target's).
    Returns w [cases, S, A] and the per-step maximum constraint multiplier [cases, steps].
    """
    fresh_q = cases[0][2] is None
    arrays = []
    for mdp, gamma, q_table, key in cases:
        d_b = occupancy(mdp, mdp.pi_b, gamma)
        q = np.zeros(S * A) if q_table is None else q_table.reshape(-1)
        arrays.append((np.log(d_b.reshape(-1)), np.log(mdp.P.reshape(S * A, S)), np.log(mdp.pi),
                       np.log(mdp.mu0), q, np.float64(gamma), np.asarray(key)))
    stacked = [jnp.asarray(np.stack(x), jnp.uint32 if i == 6 else jnp.float32) for i, x in enumerate(zip(*arrays))]
    multi_items = None if multi is None else tuple(sorted(multi.items()))
    run = _tabular_trainer(steps, batch, mu0_batch, lr, tau, mean_bound, split_batch, multi_items, fresh_q, w_init)
    w, lams = run(*stacked)
    return np.asarray(w, np.float64).reshape(-1, S, A), np.asarray(lams)


@functools.lru_cache(maxsize=None)
def _tabular_trainer(steps, batch, mu0_batch, lr, tau, mean_bound, split_batch, multi_items, fresh_q, w_init=1.0):
    multi = None if multi_items is None else dict(multi_items)
    opt = optax.chain(
        optax.clip_by_global_norm(1.0), optax.adam(optax.cosine_decay_schedule(lr, steps, 0.01))
    )
    theta0 = jnp.full(S * A, np.log(np.expm1(w_init**2)), jnp.float32)  # w = w_init everywhere (_w_of's inverse)
    embed = jnp.concatenate([jnp.repeat(jnp.eye(S), A, 0), jnp.tile(jnp.eye(A), (S, 1))], -1)  # [S*A, S+A]

    def run(log_db, log_p, log_pi, log_mu0, fixed_q, gamma, key):
        def step(carry, key):
            theta, theta_t, opt_state = carry
            k_sa, k_s1, k_a1, k_s0, k_a0, k_q = jax.random.split(key, 6)
            sa = jax.random.categorical(k_sa, log_db, shape=(batch,))  # (s,a) ~ d_b
            s1 = jax.random.categorical(k_s1, log_p[sa])  # s' ~ P(.|s,a)
            a1 = jax.random.categorical(k_a1, log_pi[s1])  # a' ~ pi(.|s')
            s0 = jax.random.categorical(k_s0, log_mu0, shape=(mu0_batch,))
            a0 = jax.random.categorical(k_a0, log_pi[s0])
            q = jax.random.normal(k_q, (S * A,)) if fresh_q else fixed_q
            idx = (sa, s0 * A + a0, s1 * A + a1)

            def loss_fn(th):
                if multi is not None:
                    k_f = k_q if multi.get("resample", True) else jax.random.PRNGKey(12345)
                    fs = random_test_functions(k_f, [embed[i] for i in idx], multi["num"],
                                               multi.get("kind", "fourier"), multi.get("scale", 1.0))
                    if multi.get("constant", False):
                        fs = with_constant(fs)
                    if multi.get("with_q", False):
                        qs = q / jnp.mean(jnp.abs(q[sa]))
                        fs = [jnp.concatenate([f, qs[i][:, None]], -1) for f, i in zip(fs, idx)]
                    return td_dice_multi_loss(_w_of(th)[sa], *fs, _w_of(theta_t)[sa], jnp.zeros(batch), gamma,
                                              split_batch=split_batch, mass_penalty=multi.get("mass_penalty", 0.0))
                return td_dice_loss(
                    _w_of(th)[sa], q[sa], q[idx[1]], q[idx[2]],
                    _w_of(theta_t)[sa], jnp.zeros(batch), gamma, split_batch=split_batch,
                )

            grads, _ = jax.grad(loss_fn, has_aux=True)(theta)
            lam = jnp.zeros(())
            if mean_bound is not None:
                g, g_grad = jax.value_and_grad(lambda th: jnp.mean(_w_of(th)[sa]))(theta)
                grads, lam = constrained_direction(grads, g_grad, g, mean_bound)
            updates, opt_state = opt.update(grads, opt_state, theta)
            theta = optax.apply_updates(theta, updates)
            theta_t = optax.incremental_update(theta, theta_t, tau)
            return (theta, theta_t, opt_state), lam

        carry = (theta0, theta0, opt.init(theta0))
        (theta, _, _), lams = jax.lax.scan(step, carry, jax.random.split(key, steps))
        return _w_of(theta), lams

    return jax.jit(jax.vmap(run))


def compare(w: np.ndarray, w_star: np.ndarray) -> dict[str, float]:
    w, w_star = w.reshape(-1), w_star.reshape(-1)
    return {
        "corr": float(np.corrcoef(w, w_star)[0, 1]),
        "mae": float(np.mean(np.abs(w - w_star))),
        "rel": float(np.linalg.norm(w - w_star) / np.linalg.norm(w_star)),
        "mae_w1": float(np.mean(np.abs(1.0 - w_star))),  # the trivial guess w = 1
    }


def single_q_case(seed: int, gamma: float = 0.9, **kw) -> dict[str, float]:
    """Test function: the true Q^pi of a reward favouring the actions pi takes more than pi_b."""
    mdp = make_mdp(seed)
    reward = 0.5 + mdp.pi - mdp.pi_b
    q = q_values(mdp, mdp.pi, reward, gamma)
    w, _ = train_tabular_w(mdp, gamma, q, jax.random.PRNGKey(seed), **kw)
    res0 = abs(np.sum(fixed_point_residual(np.ones((S, A)), mdp, gamma) * q))
    res = abs(np.sum(fixed_point_residual(w, mdp, gamma) * q))
    return {"w": w, "res0": res0, "res": res, **compare(w, true_ratio(mdp, gamma))}


def random_q_case(seed: int, gamma: float = 0.9, **kw) -> dict[str, float]:
    """Test functions: a fresh N(0, 1) table per step, with the mean(w) <= 10 constraint."""
    mdp = make_mdp(seed)
    w, lams = train_tabular_w(mdp, gamma, None, jax.random.PRNGKey(seed), mean_bound=10.0, **kw)
    res0 = np.linalg.norm(fixed_point_residual(np.ones((S, A)), mdp, gamma))
    res = np.linalg.norm(fixed_point_residual(w, mdp, gamma))
    return {"w": w, "res0": res0, "res": res, "max_lambda": float(lams.max()),
            **compare(w, true_ratio(mdp, gamma))}


def _report(name: str, out: dict) -> None:
    figures = " ".join(f"{k}={v:.4g}" for k, v in out.items() if k != "w")
    print(f"\n[miw-tabular] {name}: {figures}")


def test_td_dice_single_test_function():
    out = single_q_case(seed=0)
    _report("single Q^pi", out)
    assert np.all(np.isfinite(out["w"])) and np.all(out["w"] > 0)
    assert out["res"] < 0.1 * out["res0"]
    # One test function is one linear constraint on w: closeness to w* is not implied.


def test_td_dice_random_test_functions():
    out = random_q_case(seed=0)
    _report("fresh random Q each step", out)
    assert np.all(np.isfinite(out["w"])) and np.all(out["w"] > 0)
    assert out["max_lambda"] == 0.0  # mean(w) stays far below 10: the constraint is idle
    assert out["res"] < 0.3 * out["res0"]
    # Loose: held with margin on every seed measured (see the module's sweep). The learned w
    # sits below w* on every (s,a) (E_db[w] ~ 0.84-0.94, not 1): squaring a batch-mean residual
    # and differentiating it on the same samples has an O(1/batch) shrinkage bias.
    assert out["corr"] > 0.5
    assert out["mae"] < out["mae_w1"]


def test_split_batch_gradient_removes_the_shrinkage_bias():
    """The default gradient shrinks w (E_db[w] < 1); the split-batch gradient does not, and
    lands closer to the true ratio."""
    gamma = 0.9
    mdp = make_mdp(1)
    d_b = occupancy(mdp, mdp.pi_b, gamma)
    spec = random_q_case(seed=1)
    split = random_q_case(seed=1, split_batch=True)
    mean_spec, mean_split = float(np.sum(d_b * spec["w"])), float(np.sum(d_b * split["w"]))
    _report("split-batch gradient", {k: v for k, v in split.items()})
    print(f"[miw-tabular] E_db[w]: spec {mean_spec:.4f}, split {mean_split:.4f} (true ratio: 1)")
    assert abs(1.0 - mean_split) < 0.5 * abs(1.0 - mean_spec)
    assert split["mae"] < spec["mae"]


# --- the soft constraint --------------------------------------------------------------------------


def _tree(key, scale=1.0):
    k1, k2 = jax.random.split(key)
    return {"a": scale * jax.random.normal(k1, (3, 4)), "b": scale * jax.random.normal(k2, (5,))}


def _dot(x, y):
    return sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y)))


@pytest.mark.parametrize("seed", range(5))
def test_constrained_direction_lowers_violated_constraint(seed):
    """g > bound: <dir, grad g> >= phi > 0, so a small step along -dir lowers g."""
    params = _tree(jax.random.PRNGKey(seed))
    g_fn = lambda p: 11.0 + 0.5 * _dot(p, p) / 17.0  # always above the bound 10
    # grad f pointing to raise g (f = -g plus noise): the correction must overrule it.
    f_fn = lambda p: -g_fn(p) + 0.1 * _dot(p, _tree(jax.random.PRNGKey(100 + seed)))
    g, g_grad = jax.value_and_grad(g_fn)(params)
    f_grad = jax.grad(f_fn)(params)
    direction, lam = constrained_direction(f_grad, g_grad, g, 10.0)
    gg = _dot(g_grad, g_grad)
    phi = jnp.minimum(g - 10.0, gg)
    assert phi > 0 and lam > 0
    assert _dot(direction, g_grad) >= phi * (1 - 1e-5)
    stepped = jax.tree.map(lambda p, d: p - 1e-3 * d, params, direction)
    assert g_fn(stepped) < g


def test_constrained_direction_idle_when_satisfied():
    """g << bound and grad f already lowers g: the direction is grad f itself, lambda = 0."""
    params = _tree(jax.random.PRNGKey(0))
    g_fn = lambda p: 0.5 * _dot(p, p) / 17.0
    g, g_grad = jax.value_and_grad(g_fn)(params)
    f_grad = jax.tree.map(lambda x: 2.0 * x, g_grad)  # <grad f, grad g> > 0
    direction, lam = constrained_direction(f_grad, g_grad, g, 10.0)
    assert lam == 0.0
    same = jax.tree.map(lambda a, b: bool(jnp.all(a == b)), direction, f_grad)
    assert all(jax.tree.leaves(same))


# --- td_dice_multi: K random test functions identify the ratio -----------------------------------

CASES = [(seed, gamma) for gamma in (0.9, 0.99) for seed in range(6)]


def estimator_table(cases=CASES, **settings) -> dict[str, list[dict[str, float]]]:
    """corr, mae and E_db[w] per (seed, gamma) case for TD-DICE with Q^pi (the spec's gradient and
    the split-batch one), td_dice_multi (`settings`: train_tabular_many's keys, the multi dict
    included) and w = 1. One vmapped program per estimator."""
    mdps = [make_mdp(seed) for seed, _ in cases]
    qs = [q_values(mdp, mdp.pi, 0.5 + mdp.pi - mdp.pi_b, gamma) for mdp, (_, gamma) in zip(mdps, cases)]
    runs = [(mdp, gamma, q, jax.random.PRNGKey(seed)) for mdp, q, (seed, gamma) in zip(mdps, qs, cases)]
    multi = settings.pop("multi", {"num": 64})
    ws = {
        "td_dice_q": train_tabular_many(runs, mean_bound=10.0, **settings)[0],
        "td_dice_q_split": train_tabular_many(runs, mean_bound=10.0, split_batch=True, **settings)[0],
        "td_dice_multi": train_tabular_many(runs, mean_bound=10.0, split_batch=True, multi=multi, **settings)[0],
        "w_1": np.ones((len(cases), S, A)),
    }
    out = {}
    for name, w_all in ws.items():
        rows = []
        for w, mdp, (seed, gamma) in zip(w_all, mdps, cases):
            with np.errstate(invalid="ignore", divide="ignore"):  # w = 1 has no correlation
                c = compare(w, true_ratio(mdp, gamma))
            e_db = float(np.sum(occupancy(mdp, mdp.pi_b, gamma) * w))
            rows.append({"seed": seed, "gamma": gamma, "corr": c["corr"], "mae": c["mae"], "e_db_w": e_db})
        out[name] = rows
    return out


def test_td_dice_multi_identifies_the_ratio_on_every_mdp():
    """On all 12 MDPs (6 seeds x gamma 0.9, 0.99) w learned against K = 32 fresh random Fourier test
    functions per step correlates with the true ratio (> 0.9; measured min 0.933 at these fixed
    keys and short settings, 0.966 at the full ones of the table) and beats w = 1 in MAE.
    Short settings (1000 steps, batch 256, a larger rate) keep the test fast."""
    mdps = [make_mdp(seed) for seed, _ in CASES]
    runs = [(mdp, gamma, None, jax.random.PRNGKey(seed)) for mdp, (seed, gamma) in zip(mdps, CASES)]
    ws, lams = train_tabular_many(runs, steps=1000, batch=256, mu0_batch=256, lr=5e-2, mean_bound=10.0,
                                  split_batch=True, multi={"num": 32})
    rows = []
    for w, mdp, (seed, gamma), lam in zip(ws, mdps, CASES, lams):
        c = compare(w, true_ratio(mdp, gamma))
        e_db = float(np.sum(occupancy(mdp, mdp.pi_b, gamma) * w))
        rows.append((w, c, e_db, lam))
        print(f"[miw-tabular] td_dice_multi seed={seed} gamma={gamma}: corr={c['corr']:.3f} "
              f"mae={c['mae']:.3f} (w=1: {c['mae_w1']:.3f}) E_db[w]={e_db:.3f}")
    for w, c, e_db, lam in rows:
        assert np.all(np.isfinite(w)) and np.all(w > 0)
        assert c["corr"] > 0.9
        assert c["mae"] < c["mae_w1"]
        assert abs(e_db - 1.0) < 0.25
        assert lam.max() == 0.0


def test_td_dice_multi_constant_and_mass_penalty_pin_the_scale():
    """Issue #31: td_dice_multi's batch mean w drifted upward on the benchmark. On the 12 MDPs, w
    started at 3 everywhere: with the config's constant test function and mass penalty E_db[w]
    comes back within 0.03 of 1 (measured 0.985-0.996) and MAE falls below w = 1's; without them
    (before) it stays at 1.14-1.18 (gamma 0.9) and 2.3-2.5 (gamma 0.99) after the same 1000 steps:
    through the target w' the scale moves at the fixed point's rate only. The constant alone does
    not change that (measured 2.31-2.51): its equation fixes the scale, the penalty pulls it there."""
    from ampl_jax.config.defaults import get_config

    e = get_config().miw.td_dice_multi
    assert e.constant is True and e.mass_penalty == 0.1
    mdps = [make_mdp(seed) for seed, _ in CASES]
    runs = [(mdp, gamma, None, jax.random.PRNGKey(seed)) for mdp, (seed, gamma) in zip(mdps, CASES)]
    short = dict(steps=1000, batch=256, mu0_batch=256, lr=5e-2, mean_bound=10.0, split_batch=True, w_init=3.0)
    out = {}
    for name, extra in (("pinned", {"constant": e.constant, "mass_penalty": e.mass_penalty}), ("before", {})):
        ws, _ = train_tabular_many(runs, multi={"num": 32, **extra}, **short)
        out[name] = [(float(np.sum(occupancy(mdp, mdp.pi_b, gamma) * w)), compare(w, true_ratio(mdp, gamma)))
                     for w, mdp, (_, gamma) in zip(ws, mdps, CASES)]
    for name, rows in out.items():
        e_db = [r[0] for r in rows]
        print(f"[miw-tabular] td_dice_multi from w = 3, {name}: E_db[w] {min(e_db):.3f}-{max(e_db):.3f}, "
              f"corr mean {np.mean([r[1]['corr'] for r in rows]):.3f}, MAE mean {np.mean([r[1]['mae'] for r in rows]):.3f}")
    for (e_db, c), (e_before, _), (_, gamma) in zip(out["pinned"], out["before"], CASES):
        assert abs(e_db - 1.0) < 0.03 and c["mae"] < c["mae_w1"] and c["corr"] > 0.7
        assert e_before > (1.1 if gamma < 0.95 else 2.0)


def print_table(table: dict[str, list[dict[str, float]]]) -> None:
    """Per-case rows (corr / mae / E_db[w] of each estimator) and a min / mean summary."""
    names = list(table)
    print("| seed | gamma | " + " | ".join(f"{n}: corr / MAE / E_db[w]" for n in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for i, row in enumerate(table[names[0]]):
        cells = []
        for n in names:
            r = table[n][i]
            corr = "-" if n == "w_1" else f"{r['corr']:.3f}"
            cells.append(f"{corr} / {r['mae']:.3f} / {r['e_db_w']:.3f}")
        print(f"| {row['seed']} | {row['gamma']} | " + " | ".join(cells) + " |")
    cells = []
    for n in names:
        c = np.array([r["corr"] for r in table[n]])
        m = np.array([r["mae"] for r in table[n]])
        e = np.array([r["e_db_w"] for r in table[n]])
        corr = "-" if n == "w_1" else f"{c.min():.3f} / {c.mean():.3f}"
        cells.append(f"corr min/mean {corr}; MAE mean {m.mean():.3f}; E_db[w] {e.min():.3f}-{e.max():.3f}")
    print("| all | | " + " | ".join(cells) + " |")


if __name__ == "__main__":  # measurement sweep: python tests/test_miw_tabular.py
    import sys

    if "--table" not in sys.argv[1:]:
        for gamma in (0.9, 0.99):
            for seed in range(6):
                for name, case in (("single", single_q_case), ("random", random_q_case)):
                    _report(f"gamma={gamma} seed={seed} {name}", case(seed, gamma))
    # Estimators against the exact ratio: 4000 steps, batch 1024, Adam 1e-2 on a table.
    print("\n[miw-tabular] TD-DICE with Q^pi vs td_dice_multi (K = 64 fresh random Fourier features) vs w = 1")
    print_table(estimator_table())
