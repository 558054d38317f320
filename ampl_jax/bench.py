"""Benchmarks of the package: `python -m ampl_jax.bench --suite=model,rollout --out=FILE.json`.

SUITES maps a name to a function(quick: bool) -> dict of results; add a suite by adding an entry.
Every figure is a median over several timed windows after a warm-up, compile time reported apart.
The `peer` entries are the authors' PyTorch code on a 2-core CPU (shared docs, peers.md).
`--suite=precision` compares float32 with bfloat16 matmul inputs (the `compute` config section);
the JSON's env records the CPU model and its bfloat16 flags (amx_bf16, avx512_bf16).
`--suite=fits` times a model refit of 1 and 3 seeds: a loop of `fit` against `fit_seeds`.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import platform
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from ampl_jax import precision  # noqa: E402  (cpu_info: importable without this module's flags)

FLAGS = flags.FLAGS
flags.DEFINE_string("suite", "model,rollout", "comma-separated suites to run")
flags.DEFINE_string("out", "bench_results/bench.json", "JSON output path ('' = none)")
flags.DEFINE_bool("quick", False, "tiny smoke version (seconds)")

OBS_DIM, ACT_DIM = 17, 6  # Walker2d shapes, as peers.md

PEERS = {
    "model_steps_per_s": 72.5,  # authors' code, ensemble minibatch steps/s
    "rollout_32k_s": (1.2, 1.6),  # authors' code, seconds per 32,000-transition rollout
    "policy_iters_per_s": 16.1,  # authors' code, policy iterations/s (no MIW), h = 3, 50 % real
    "miw_steps_per_s": 27.1,  # authors' code, TD-DICE steps/s, batch 1024 + 2048 mu0 states
}


def _block(x):
    return jax.tree.map(lambda a: a.block_until_ready(), x)


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    _block(fn())
    return time.perf_counter() - t


def synthetic_transitions(n: int, seed: int = 0):
    """Smooth random dynamics of Walker2d shapes (content does not matter for speed)."""
    from ampl_jax.types import Transitions

    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, OBS_DIM)).astype(np.float32)
    a = rng.uniform(-1, 1, size=(n, ACT_DIM)).astype(np.float32)
    proj = rng.normal(size=(ACT_DIM, OBS_DIM)).astype(np.float32) * 0.1
    nxt = s + 0.05 * np.tanh(s) + a @ proj + 0.01 * rng.normal(size=s.shape).astype(np.float32)
    r = (np.tanh(s[:, 0]) + 0.1 * (a**2).sum(-1)).astype(np.float32)
    return Transitions(*(jnp.asarray(x) for x in (s, a, r, nxt, np.zeros(n, np.float32))))


def _model_config(quick: bool):
    from ampl_jax.config_default import get_config

    cfg = get_config().model
    if quick:
        cfg.epoch_steps = 50
    return cfg


def suite_model(quick: bool) -> dict[str, Any]:
    """Ensemble training minibatch steps/s at paper sizes (7 x 4x200, batch 128 per member)."""
    from ampl_jax.world_model.ensemble import init_model_state
    from ampl_jax.world_model.fit import EpochCarry, make_epoch_fn, prepare_fit_data, static_from_config

    cfg = _model_config(quick)
    n = 20_000 if quick else 200_000
    data = synthetic_transitions(n)
    state = init_model_state(jax.random.PRNGKey(0), data, cfg)
    d = _block(prepare_fit_data(state, jax.random.PRNGKey(1), data, None, cfg.holdout_fraction,
                                cfg.max_holdout))
    epoch = make_epoch_fn(static_from_config(cfg))
    inf = jnp.full((cfg.num_members,), jnp.inf)
    carry = EpochCarry(state.params, state.opt_state, state.params, inf, inf)
    keys = jax.random.split(jax.random.PRNGKey(2), 16)
    t = time.perf_counter()
    compiled = epoch.lower(carry, keys[0], d).compile()
    compile_s = time.perf_counter() - t
    carry = _block(compiled(carry, keys[0], d))[0]  # warm-up
    windows = []
    for i in range(2 if quick else 4):
        t = time.perf_counter()
        carry = _block(compiled(carry, keys[i + 1], d))[0]
        windows.append(time.perf_counter() - t)
    epoch_s = statistics.median(windows)
    steps = int(cfg.epoch_steps) / epoch_s
    return {
        "transitions": n,
        "members": int(cfg.num_members),
        "hidden": list(cfg.hidden_dims),
        "batch_per_member": int(cfg.batch_size),
        "epoch_steps": int(cfg.epoch_steps),
        "holdout": int(d.hx.shape[0]),
        "compile_s": compile_s,
        "epoch_s_windows": windows,
        "epoch_s": epoch_s,
        "steps_per_s": steps,
        "peer_steps_per_s": PEERS["model_steps_per_s"],
        "ratio_vs_peer": steps / PEERS["model_steps_per_s"],
    }


def _mlp_policy(key: jax.Array, hidden=(400, 300), noise_dim: int = 50):
    """A stand-in for the implicit actor: max_action * tanh(MLP([s, eps])), eps ~ N(0, 1) clipped."""
    dims = [OBS_DIM + noise_dim, *hidden, ACT_DIM]
    ks = jax.random.split(key, len(dims) - 1)
    params = [(jax.random.normal(k, (i, o)) / np.sqrt(i), jnp.zeros(o))
              for k, i, o in zip(ks, dims[:-1], dims[1:])]

    def policy(k, obs):
        eps = jnp.clip(jax.random.normal(k, (obs.shape[0], noise_dim)), -3.0, 3.0)
        h = jnp.concatenate([obs, eps], -1)
        for w, b in params[:-1]:
            h = jax.nn.leaky_relu(h @ w + b, 0.01)
        w, b = params[-1]
        return jnp.tanh(h @ w + b)

    return policy


def suite_rollout(quick: bool) -> dict[str, Any]:
    """Model rollout transitions/s: 2048 starts, h = 5, random elites, a 400-300 MLP policy."""
    from ampl_jax.world_model.ensemble import init_model_state
    from ampl_jax.world_model.rollout import rollout
    from ampl_jax.world_model.termination import termination_fn

    cfg = _model_config(quick)
    data = synthetic_transitions(20_000)
    state = init_model_state(jax.random.PRNGKey(0), data, cfg)
    state = state.replace(elites=jax.random.permutation(jax.random.PRNGKey(3), cfg.num_members)[
        : cfg.num_elites].astype(jnp.int32))
    policy = _mlp_policy(jax.random.PRNGKey(4))
    batch, horizon = (256, 5) if quick else (2048, 5)
    start = data.observations[:batch]
    obs_range = jnp.full((OBS_DIM,), 1e9)  # keep every row valid: speed only
    out: dict[str, Any] = {"starts": batch, "horizon": horizon, "policy": "MLP 400-300 on [s, noise50]"}
    for mode in ("iid", "balanced"):
        fn = jax.jit(functools.partial(
            rollout, policy_fn=policy, horizon=horizon, termination_fn=termination_fn("Walker2d-v5"),
            reward_bound=1e9, elite_sampling=mode))
        keys = jax.random.split(jax.random.PRNGKey(5), 16)
        t = time.perf_counter()
        compiled = fn.lower(keys[0], state, start_obs=start, obs_range=obs_range).compile()
        compile_s = time.perf_counter() - t
        _block(compiled(keys[0], state, start_obs=start, obs_range=obs_range))
        windows = [_timed(lambda k=k: compiled(k, state, start_obs=start, obs_range=obs_range))
                   for k in keys[1: 4 if quick else 11]]
        call_s = statistics.median(windows)
        rate = batch * horizon / call_s
        per_32k = 32_000 / rate
        out[mode] = {
            "compile_s": compile_s,
            "call_s": call_s,
            "transitions_per_s": rate,
            "rollout_32k_s": per_32k,
            "speedup_vs_peer": [PEERS["rollout_32k_s"][0] / per_32k, PEERS["rollout_32k_s"][1] / per_32k],
        }
    return out


def _agent_setup(schedule: str, quick: bool, horizon: int = 5, estimator: str = "td_dice", dtype: str = "float32"):
    """Paper sizes (batch 512, 400-300 nets, 7 x 4x200 ensemble, 32k rollouts every 250
    iterations into a 640k buffer) on 200k synthetic Walker2d-shaped transitions, with the step
    counter past the warm start so the Q term is on and the real-data fraction is 0.5.
    `dtype`: compute.dtype and compute.model_dtype (matmul inputs of every network)."""
    from ampl_jax.config_default import get_config

    from ampl_jax.methods.ampl.state import init_train_state, make_agent
    from ampl_jax.types import DatasetInfo, OfflineData
    from ampl_jax.world_model.ensemble import init_model_state
    from ampl_jax.world_model.termination import termination_fn

    c = get_config()
    c.miw.schedule = schedule
    c.miw.estimator = estimator
    c.rollout.horizon = horizon
    c.compute.dtype = c.compute.model_dtype = dtype
    if quick:
        c.agent.hidden_dims, c.agent.batch_size = (64, 64), 64
        c.miw.batch_size, c.miw.mu0_batch_size = 64, 64
        c.rollout.period, c.rollout.transitions_per_rollout, c.rollout.buffer_capacity = 20, 1000, 10_000
    n = 20_000 if quick else 200_000
    t = synthetic_transitions(n)
    scaled = (t.rewards - t.rewards.min() + 1e-3) / (t.rewards.max() - t.rewards.min())
    data = OfflineData(t.observations, t.actions, t.rewards, scaled, t.next_observations, t.dones,
                       jnp.roll(t.actions, -1, 0), jnp.ones(n), t.observations[:1000])
    info = DatasetInfo("bench/walker2d-synthetic-v0", "Walker2d-v5", OBS_DIM, ACT_DIM, 1.0, 1000, n, None, None,
                       float(t.rewards.min()), float(t.rewards.max()))
    agent = make_agent(c, info, termination_fn("Walker2d-v5"), np.full(OBS_DIM, 1e3, np.float32), 1e3)
    model = init_model_state(jax.random.PRNGKey(1), data.transitions(), c.model)
    state = init_train_state(agent, jax.random.PRNGKey(0), model)
    state = state.replace(step=jnp.asarray(100 * c.train.epoch_length, jnp.int32))
    return c, agent, data, state


def suite_update(quick: bool) -> dict[str, Any]:
    """Iterations/s of the fused update_step (rollout + scanned iterations) against the same math
    run as one jitted call per iteration; windows of the variants interleaved, medians reported."""
    import resource

    from ampl_jax.methods.ampl.update import iteration, make_update_step

    from ampl_jax.methods.ampl.miw_step import make_miw_phase
    from ampl_jax.world_model.rollout import rollout
    from ampl_jax.buffer import buffer_insert

    variants: dict[str, Any] = {}
    for name, schedule in (("fused_interleaved", "interleaved"), ("fused_no_miw", "phased")):
        c, agent, data, state = _agent_setup(schedule, quick)
        step = make_update_step(agent)
        t = time.perf_counter()
        compiled = step.lower(state, data).compile()
        compile_s = time.perf_counter() - t
        state, _ = _block(compiled(state, data))  # warm-up
        variants[name] = dict(call=compiled, state=state, data=data, compile_s=compile_s,
                              period=c.rollout.period, windows=[])

    # Unfused: the same interleaved math, one jitted call per iteration and one per rollout.
    c, agent, data, state = _agent_setup("interleaved", quick)
    r = c.rollout
    n_starts = r.transitions_per_rollout // r.horizon

    @jax.jit
    def do_rollout(state, data, key):
        k_start, k_roll = jax.random.split(key)
        start = data.observations[jax.random.randint(k_start, (n_starts,), 0, data.observations.shape[0])]
        trans, valid = rollout(k_roll, state.model, lambda k, o: agent.act(state.actor, k, o)[0], start, r.horizon,
                               agent.termination_fn, agent.obs_range, agent.reward_bound)
        return state.replace(buffer=buffer_insert(state.buffer, trans, valid))

    plain = jax.jit(lambda s, d, k: iteration(agent, s, d, k, False), donate_argnums=0)
    with_actor = jax.jit(lambda s, d, k: iteration(agent, s, d, k, True), donate_argnums=0)
    t = time.perf_counter()
    state = do_rollout(state, data, jax.random.PRNGKey(7))
    state, _ = plain(state, data, jax.random.PRNGKey(8))
    state, _ = _block(with_actor(state, data, jax.random.PRNGKey(9)))
    unfused_compile = time.perf_counter() - t

    def unfused_period(state, key):
        keys = jax.random.split(key, r.period + 1)
        state = do_rollout(state, data, keys[0])
        for i in range(1, r.period + 1, 2):
            state, _ = plain(state, data, keys[i])
            state, _ = with_actor(state, data, keys[i + 1])
        return state

    variants["unfused_interleaved"] = dict(state=state, compile_s=unfused_compile, period=r.period, windows=[])

    # MIW alone (the authors' phased blocks): steps/s of a scanned block.
    c, agent, data, miw_state = _agent_setup("phased", quick)
    miw_steps = 20 if quick else 200
    phase = make_miw_phase(agent, miw_steps)
    miw_state, _ = _block(phase(miw_state, data))
    miw_windows = []

    rounds = 2 if quick else 3
    for i in range(rounds):
        for name, v in variants.items():
            t = time.perf_counter()
            if name == "unfused_interleaved":
                v["state"] = _block(unfused_period(v["state"], jax.random.PRNGKey(100 + i)))
            else:
                v["state"], _ = _block(v["call"](v["state"], v["data"]))
            v["windows"].append(time.perf_counter() - t)
        t = time.perf_counter()
        miw_state, _ = _block(phase(miw_state, data))
        miw_windows.append(time.perf_counter() - t)

    out: dict[str, Any] = {"horizon": 5, "batch": int(c.agent.batch_size), "hidden": list(c.agent.hidden_dims),
                           "period": int(c.rollout.period), "rounds": rounds}
    for name, v in variants.items():
        med = statistics.median(v["windows"])
        out[name] = {"compile_s": v["compile_s"], "window_s": v["windows"], "iters_per_s": v["period"] / med}
    out["fused_speedup_vs_unfused"] = out["fused_interleaved"]["iters_per_s"] / out["unfused_interleaved"]["iters_per_s"]
    out["miw_steps_per_s"] = miw_steps / statistics.median(miw_windows)
    out["peer_iters_per_s_no_miw_h3"] = PEERS["policy_iters_per_s"]
    out["peer_miw_steps_per_s"] = PEERS["miw_steps_per_s"]
    out["ratio_no_miw_vs_peer"] = out["fused_no_miw"]["iters_per_s"] / PEERS["policy_iters_per_s"]
    out["ratio_miw_vs_peer"] = out["miw_steps_per_s"] / PEERS["miw_steps_per_s"]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def suite_seeds(quick: bool) -> dict[str, Any]:
    """Wall time of one update_step for 1, 2, 4, 8 vmapped seeds, as a ratio to 1 seed.

    Paper sizes, MIW interleaved; the seed axis is sharded over all local devices (one on a
    plain CPU). Windows of the seed counts are interleaved; medians reported.
    """
    from ampl_jax import distributed
    from ampl_jax.methods.ampl.state import init_train_state
    from ampl_jax.methods.ampl.update import build_update_step

    counts = (1, 2, 4) if quick else (1, 2, 4, 8)
    runs: dict[int, Any] = {}
    for n in counts:
        c, agent, data, state = _agent_setup("interleaved", quick)
        states = [init_train_state(agent, jax.random.PRNGKey(s), jax.tree.map(jnp.copy, state.model)) for s in range(n)]
        states = [s.replace(step=state.step) for s in states]
        mesh = distributed.seed_mesh(n)
        stacked = distributed.shard_seeds(distributed.stack_seeds(states), mesh)
        step = distributed.make_seeded_step(build_update_step(agent), mesh)
        data = distributed.replicate(data, mesh)
        t = time.perf_counter()
        stacked, _ = _block(step(stacked, data))
        runs[n] = dict(step=step, state=stacked, data=data, first_call_s=time.perf_counter() - t, windows=[],
                       period=c.rollout.period)
    for _ in range(2 if quick else 3):
        for n, r in runs.items():
            t = time.perf_counter()
            r["state"], _ = _block(r["step"](r["state"], r["data"]))
            r["windows"].append(time.perf_counter() - t)
    base = statistics.median(runs[counts[0]]["windows"])
    out: dict[str, Any] = {"devices": len(jax.devices())}
    for n, r in runs.items():
        med = statistics.median(r["windows"])
        out[f"seeds_{n}"] = {"call_s": med, "windows": r["windows"], "ratio_to_1": med / base,
                             "seed_iters_per_s": n * r["period"] / med, "first_call_s": r["first_call_s"]}
    return out


def suite_miw(quick: bool) -> dict[str, Any]:
    """Seconds per MIW step of each estimator (a scanned "phased" block of MIW steps alone) beside
    seconds per policy iteration without MIW (fused update_step, "phased"); the ratio is what an
    interleaved MIW step adds to an iteration. Windows interleaved, medians reported."""
    from ampl_jax.methods.ampl.update import make_update_step
    from ampl_jax.methods.ampl.miw_step import make_miw_phase

    miw_steps = 20 if quick else 200
    runs: dict[str, Any] = {}
    for est in ("td_dice", "td_dice_multi"):
        c, agent, data, state = _agent_setup("phased", quick, estimator=est)
        phase = make_miw_phase(agent, miw_steps)
        t = time.perf_counter()
        state, _ = _block(phase(state, data))
        runs[est] = dict(call=lambda s, d, p=phase: p(s, d), state=state, data=data, first_call_s=time.perf_counter() - t,
                         steps=miw_steps, windows=[])
    c, agent, data, state = _agent_setup("phased", quick)
    step = make_update_step(agent)
    t = time.perf_counter()
    state, _ = _block(step(state, data))
    runs["iteration_no_miw"] = dict(call=step, state=state, data=data, first_call_s=time.perf_counter() - t,
                                    steps=int(c.rollout.period), windows=[])
    for _ in range(2 if quick else 3):
        for r in runs.values():
            t = time.perf_counter()
            r["state"], _ = _block(r["call"](r["state"], r["data"]))
            r["windows"].append(time.perf_counter() - t)
    out: dict[str, Any] = {"batch": int(c.miw.batch_size), "mu0_batch": int(c.miw.mu0_batch_size),
                           "num_functions": int(c.miw.td_dice_multi.num_functions)}
    for name, r in runs.items():
        out[f"{name}_ms"] = 1e3 * statistics.median(r["windows"]) / r["steps"]
    for est in ("td_dice", "td_dice_multi"):
        out[f"{est}_step_per_iteration"] = out[f"{est}_ms"] / out["iteration_no_miw_ms"]
    out["multi_vs_td_dice"] = out["td_dice_multi_ms"] / out["td_dice_ms"]
    return out


def suite_precision(quick: bool) -> dict[str, Any]:
    """float32 against bfloat16 matmul inputs (compute.dtype and compute.model_dtype together) at
    paper sizes: the fused update_step with and without MIW, a block of MIW steps, an ensemble
    training epoch and a 32k-transition rollout of the actor. Windows of every (figure, dtype)
    pair are interleaved round by round, so load drift hits both dtypes alike; medians reported,
    and the bfloat16 speed as a ratio to float32 (> 1: bfloat16 faster)."""
    from ampl_jax.methods.ampl.update import make_update_step, model_rollouts
    from ampl_jax.methods.ampl.miw_step import make_miw_phase
    from ampl_jax.world_model.fit import EpochCarry, make_epoch_fn, prepare_fit_data, static_from_config

    dtypes = ("float32", "bfloat16")
    miw_steps = 20 if quick else 100
    cases: dict[tuple[str, str], dict[str, Any]] = {}
    for dt in dtypes:
        for name, schedule in (("fused_interleaved", "interleaved"), ("fused_no_miw", "phased")):
            c, agent, data, state = _agent_setup(schedule, quick, dtype=dt)
            call = make_update_step(agent)
            cases[name, dt] = dict(call=lambda s, d, call=call: call(s, d)[0], state=state, data=data,
                                   units=c.rollout.period, unit="it/s")
        c, agent, data, state = _agent_setup("phased", quick, dtype=dt)
        phase = make_miw_phase(agent, miw_steps)
        cases["miw", dt] = dict(call=lambda s, d, phase=phase: phase(s, d)[0], state=state, data=data,
                                units=miw_steps, unit="MIW steps/s")
        rollouts = jax.jit(lambda s, d, agent=agent: s.replace(
            buffer=model_rollouts(agent, s, d, jax.random.fold_in(s.key, 1))[0]), donate_argnums=0)
        cases["rollout", dt] = dict(call=rollouts, state=jax.tree.map(jnp.copy, state), data=data,
                                    units=c.rollout.transitions_per_rollout, unit="transitions/s")
        cfg = c.model
        cfg.epoch_steps = 50 if quick else 200
        fit_data = _block(prepare_fit_data(state.model, jax.random.PRNGKey(1), data.transitions(), None,
                                           cfg.holdout_fraction, cfg.max_holdout))
        epoch = make_epoch_fn(static_from_config(cfg, dt))
        inf = jnp.full((cfg.num_members,), jnp.inf)
        model = jax.tree.map(jnp.copy, state.model)  # `state` is donated by the MIW case
        carry = EpochCarry(model.params, model.opt_state, model.params, inf, inf)
        cases["model_epoch", dt] = dict(call=lambda s, d, epoch=epoch: epoch(s, jax.random.PRNGKey(2), d)[0],
                                        state=carry, data=fit_data, units=cfg.epoch_steps, unit="model steps/s")
    for case in cases.values():  # compile and warm up
        t = time.perf_counter()
        case["state"] = _block(case["call"](case["state"], case["data"]))
        case["first_call_s"], case["windows"] = time.perf_counter() - t, []
    rounds = 2 if quick else 5
    for _ in range(rounds):
        for case in cases.values():
            t = time.perf_counter()
            case["state"] = _block(case["call"](case["state"], case["data"]))
            case["windows"].append(time.perf_counter() - t)
    out: dict[str, Any] = {"rounds": rounds, "hidden": list(c.agent.hidden_dims), "batch": int(c.agent.batch_size),
                           "horizon": int(c.rollout.horizon), "miw_steps_per_window": miw_steps,
                           "model_steps_per_window": int(cfg.epoch_steps)}
    for (name, dt), case in cases.items():
        med = statistics.median(case["windows"])
        out.setdefault(name, {"unit": case["unit"]})[dt] = {
            "window_s": case["windows"], "first_call_s": case["first_call_s"], "per_s": case["units"] / med}
    for name in {n for n, _ in cases}:
        out[name]["bf16_speed_ratio"] = out[name]["bfloat16"]["per_s"] / out[name]["float32"]["per_s"]
    return out


def suite_fits(quick: bool) -> dict[str, Any]:
    """Seconds per w-weighted refit of 1 and 3 seeds: a Python loop of `fit` per seed (before
    issue 13's item 7) against `fit_seeds` (one device call per epoch for all seeds; "vmap" and
    the bit-exact "map"). Paper ensemble (7 x 4x200, batch 128), 200 steps per epoch (the CPU
    budget's), a fixed number of epochs (patience above it), 50k transitions. Windows of the
    variants interleaved after a warm-up call each (its time, with compilation, reported apart);
    medians reported, wall and process CPU seconds. The load average is recorded: on a shared
    machine the wall figures are noisy."""
    from ampl_jax import distributed
    from ampl_jax.world_model.ensemble import init_model_state
    from ampl_jax.world_model.fit import fit, fit_seeds

    cfg = _model_config(quick)
    epochs = 2 if quick else 3
    cfg.epoch_steps, cfg.patience, cfg.max_epochs, cfg.refit_max_epochs = (20 if quick else 200), epochs + 1, epochs, epochs
    n = 5_000 if quick else 50_000
    data = synthetic_transitions(n)
    max_seeds = 3
    models = [init_model_state(jax.random.PRNGKey(s), data, cfg) for s in range(max_seeds)]
    weights = jax.random.uniform(jax.random.PRNGKey(7), (max_seeds, n), minval=0.2, maxval=3.0)
    keys = jax.random.split(jax.random.PRNGKey(8), max_seeds)

    def loop(k):  # train.py's refit before: one fit per seed, one after another
        return [fit(models[s], keys[s], data, weights[s], cfg, max_epochs=epochs)[0] for s in range(k)]

    def seeds(k, batching):
        return fit_seeds(distributed.stack_seeds(models[:k]), keys[:k], data, weights[:k], cfg, max_epochs=epochs,
                         batching=batching)[0]

    variants = {"seeds_1/loop": lambda: loop(1), "seeds_1/fit_seeds": lambda: seeds(1, "vmap"),
                "seeds_3/loop": lambda: loop(3), "seeds_3/fit_seeds_vmap": lambda: seeds(3, "vmap"),
                "seeds_3/fit_seeds_map": lambda: seeds(3, "map")}
    def timed(call):  # wall seconds and this process's CPU seconds (all threads): less load-sensitive
        t, c = time.perf_counter(), time.process_time()
        _block(call())
        return time.perf_counter() - t, time.process_time() - c

    load_before = os.getloadavg()
    first_call = {name: timed(call)[0] for name, call in variants.items()}  # compile + warm-up
    windows: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(1 if quick else 3):
        for name, call in variants.items():
            wall, cpu_s = timed(call)
            windows[name].append(wall)
            cpu[name].append(cpu_s)
    out: dict[str, Any] = {
        "members": int(cfg.num_members), "hidden": list(cfg.hidden_dims), "batch_per_member": int(cfg.batch_size),
        "epoch_steps": int(cfg.epoch_steps), "epochs": epochs, "transitions": n,
        "loadavg_1_5_15_before": list(load_before), "loadavg_1_5_15_after": list(os.getloadavg()),
    }
    for name in variants:
        group, variant = name.split("/")
        out.setdefault(group, {})[variant] = {"refit_s": statistics.median(windows[name]), "windows": windows[name],
                                              "cpu_s": statistics.median(cpu[name]), "cpu_windows": cpu[name],
                                              "first_call_s": first_call[name]}
    for group in ("seeds_1", "seeds_3"):
        g = out[group]
        for variant in g:
            if variant != "loop":
                g[variant]["speedup_vs_loop"] = g["loop"]["refit_s"] / g[variant]["refit_s"]
                g[variant]["cpu_ratio_to_loop"] = g[variant]["cpu_s"] / g["loop"]["cpu_s"]
    return out


SUITES: dict[str, Callable[[bool], dict[str, Any]]] = {
    "seeds": suite_seeds,
    "model": suite_model,
    "rollout": suite_rollout,
    "update": suite_update,
    "miw": suite_miw,
    "precision": suite_precision,
    "fits": suite_fits,
}


def environment() -> dict[str, Any]:
    dev = jax.devices()[0]
    return {
        **precision.cpu_info(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device_kind": dev.device_kind,
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "machine": platform.processor() or platform.machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def markdown(results: dict[str, Any]) -> str:
    """A small table of the headline figures with ratios to the authors' code."""
    lines = ["| figure | ours | authors' code (peers.md) | ratio |", "|---|---|---|---|"]
    m = results.get("model")
    if m:
        lines.append(f"| ensemble minibatch steps/s (7 x 4x200, batch 128) | {m['steps_per_s']:.1f} "
                     f"| {m['peer_steps_per_s']} | {m['ratio_vs_peer']:.2f}x |")
        lines.append(f"| ensemble epoch ({m['epoch_steps']} steps) s / compile s | {m['epoch_s']:.2f} / "
                     f"{m['compile_s']:.2f} | 14.3 / - | |")
    r = results.get("rollout")
    if r:
        for mode in ("iid", "balanced"):
            x = r[mode]
            lo, hi = x["speedup_vs_peer"]
            lines.append(f"| rollout transitions/s ({mode} elites, {r['starts']} x h={r['horizon']}) "
                         f"| {x['transitions_per_s']:.0f} | | |")
            lines.append(f"| s per 32k-transition rollout ({mode} elites) | {x['rollout_32k_s']:.3f} "
                         f"| 1.2-1.6 | {lo:.1f}-{hi:.1f}x faster |")
    u = results.get("update")
    if u:
        lines.append(f"| fused update_step it/s, MIW interleaved (h=5) | {u['fused_interleaved']['iters_per_s']:.1f} | | |")
        lines.append(f"| fused update_step it/s, no MIW in the step (h=5) | {u['fused_no_miw']['iters_per_s']:.1f} "
                     f"| {u['peer_iters_per_s_no_miw_h3']} (h=3) | {u['ratio_no_miw_vs_peer']:.2f}x |")
        lines.append(f"| same math, one jitted call per iteration, MIW interleaved | "
                     f"{u['unfused_interleaved']['iters_per_s']:.1f} | | fused {u['fused_speedup_vs_unfused']:.2f}x |")
        lines.append(f"| MIW (TD-DICE) steps/s, batch 1024 + 2048 mu0 | {u['miw_steps_per_s']:.1f} "
                     f"| {u['peer_miw_steps_per_s']} | {u['ratio_miw_vs_peer']:.2f}x |")
        lines.append(f"| compile s: fused interleaved / no MIW / unfused | {u['fused_interleaved']['compile_s']:.1f} / "
                     f"{u['fused_no_miw']['compile_s']:.1f} / {u['unfused_interleaved']['compile_s']:.1f} | | |")
        lines.append(f"| peak RSS MB (whole bench process) | {u['peak_rss_mb']:.0f} | about 1000 | |")
    sd = results.get("seeds")
    if sd:
        for k, v in sd.items():
            if k.startswith("seeds_"):
                lines.append(f"| {k.split('_')[1]} vmapped seeds: s per update_step (ratio to 1 seed), seed-it/s "
                             f"| {v['call_s']:.2f} ({v['ratio_to_1']:.2f}x), {v['seed_iters_per_s']:.1f} | | |")
    pr = results.get("precision")
    if pr:
        env = results.get("env", {})
        lines += ["", f"compute dtype on {env.get('cpu_model', '?')} (bf16 flags: {env.get('cpu_bf16_flags', '?')})", "",
                  "| figure | float32 | bfloat16 | bfloat16 speed / float32 |", "|---|---|---|---|"]
        for name in ("fused_interleaved", "fused_no_miw", "miw", "model_epoch", "rollout"):
            if name in pr:
                x = pr[name]
                lines.append(f"| {name} ({x['unit']}) | {x['float32']['per_s']:.1f} | {x['bfloat16']['per_s']:.1f} "
                             f"| {x['bf16_speed_ratio']:.2f}x |")
    ft = results.get("fits")
    if ft:
        lines += ["", f"model refit ({ft['members']} x {ft['hidden']}, {ft['epochs']} epochs of {ft['epoch_steps']} "
                  f"steps): seconds (speed-up vs the loop of fit)", "", "| seeds | loop of fit | fit_seeds |",
                  "|---|---|---|"]
        for group in ("seeds_1", "seeds_3"):
            g = ft[group]
            cells = ", ".join(f"{v}: {x['refit_s']:.2f} ({x['speedup_vs_loop']:.2f}x), CPU s {x['cpu_s']:.1f}"
                              for v, x in g.items() if v != "loop")
            lines.append(f"| {group.split('_')[1]} | {g['loop']['refit_s']:.2f}, CPU s {g['loop']['cpu_s']:.1f} | {cells} |")
    for name, res in results.items():  # suites added later print their scalar figures
        if name not in ("model", "rollout", "update", "seeds", "precision", "fits", "env") and isinstance(res, dict):
            for k, v in res.items():
                if isinstance(v, (int, float)):
                    lines.append(f"| {name}.{k} | {v:.4g} | | |")
    return "\n".join(lines)


def main(argv) -> None:
    del argv
    names = [s.strip() for s in FLAGS.suite.split(",") if s.strip()]
    unknown = [s for s in names if s not in SUITES]
    if unknown:
        raise app.UsageError(f"unknown suites {unknown}; known: {sorted(SUITES)}")
    results: dict[str, Any] = {"env": environment(), "quick": FLAGS.quick}
    for name in names:
        print(f"running suite {name} ...", flush=True)
        results[name] = SUITES[name](FLAGS.quick)
    print(markdown(results))
    print(json.dumps(results["env"]))
    if FLAGS.out:
        os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
        with open(FLAGS.out, "w") as f:
            json.dump(results, f, indent=2, default=float)
        print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
