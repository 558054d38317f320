"""Benchmark suites of the agent: the fused update step, seeds, the MIW step, bf16 against f32
(`python -m ampl_jax.lab.bench --suite=update,seeds,miw,precision`)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


from ampl_jax.lab.bench_model import ACT_DIM, OBS_DIM, PEERS, block_until_ready, synthetic_transitions


def _agent_setup(schedule: str, quick: bool, horizon: int = 5, estimator: str = "td_dice", dtype: str = "float32"):
    """Paper sizes (batch 512, 400-300 nets, 7 x 4x200 ensemble, 32k rollouts every 250
    iterations into a 640k buffer) on 200k synthetic Walker2d-shaped transitions, with the step
    counter past the warm start so the Q term is on and the real-data fraction is 0.5.
    `dtype`: compute.dtype and compute.model_dtype (matmul inputs of every network)."""
    from ampl_jax.config.defaults import get_config

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
    from ampl_jax.world_model.buffer import buffer_insert

    variants: dict[str, Any] = {}
    for name, schedule in (("fused_interleaved", "interleaved"), ("fused_no_miw", "phased")):
        c, agent, data, state = _agent_setup(schedule, quick)
        step = make_update_step(agent)
        t = time.perf_counter()
        compiled = step.lower(state, data).compile()
        compile_s = time.perf_counter() - t
        state, _ = block_until_ready(compiled(state, data))  # warm-up
        variants[name] = dict(call=compiled, state=state, data=data, compile_s=compile_s,
                              period=c.rollout.period, windows=[])

    # Unfused: the same interleaved math, one jitted call per iteration and one per rollout.
    c, agent, data, state = _agent_setup("interleaved", quick)
    r = c.rollout
    n_starts = r.transitions_per_rollout // r.horizon

    @jax.jit
    def do_rollout(state, data, key):
        k_start, k_roll = jax.random.split(key)
        start = data.observations[data.indices(k_start, n_starts)]
        trans, valid = rollout(k_roll, state.model, lambda k, o: agent.act(state.actor, k, o)[0], start, r.horizon,
                               agent.termination_fn, agent.obs_range, agent.reward_bound)
        return state.replace(buffer=buffer_insert(state.buffer, trans, valid))

    plain = jax.jit(lambda s, d, k: iteration(agent, s, d, k, False), donate_argnums=0)
    with_actor = jax.jit(lambda s, d, k: iteration(agent, s, d, k, True), donate_argnums=0)
    t = time.perf_counter()
    state = do_rollout(state, data, jax.random.PRNGKey(7))
    state, _ = plain(state, data, jax.random.PRNGKey(8))
    state, _ = block_until_ready(with_actor(state, data, jax.random.PRNGKey(9)))
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
    miw_state, _ = block_until_ready(phase(miw_state, data))
    miw_windows = []

    rounds = 2 if quick else 3
    for i in range(rounds):
        for name, v in variants.items():
            t = time.perf_counter()
            if name == "unfused_interleaved":
                v["state"] = block_until_ready(unfused_period(v["state"], jax.random.PRNGKey(100 + i)))
            else:
                v["state"], _ = block_until_ready(v["call"](v["state"], v["data"]))
            v["windows"].append(time.perf_counter() - t)
        t = time.perf_counter()
        miw_state, _ = block_until_ready(phase(miw_state, data))
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
        stacked, _ = block_until_ready(step(stacked, data))
        runs[n] = dict(step=step, state=stacked, data=data, first_call_s=time.perf_counter() - t, windows=[],
                       period=c.rollout.period)
    for _ in range(2 if quick else 3):
        for n, r in runs.items():
            t = time.perf_counter()
            r["state"], _ = block_until_ready(r["step"](r["state"], r["data"]))
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
        state, _ = block_until_ready(phase(state, data))
        runs[est] = dict(call=lambda s, d, p=phase: p(s, d), state=state, data=data, first_call_s=time.perf_counter() - t,
                         steps=miw_steps, windows=[])
    c, agent, data, state = _agent_setup("phased", quick)
    step = make_update_step(agent)
    t = time.perf_counter()
    state, _ = block_until_ready(step(state, data))
    runs["iteration_no_miw"] = dict(call=step, state=state, data=data, first_call_s=time.perf_counter() - t,
                                    steps=int(c.rollout.period), windows=[])
    for _ in range(2 if quick else 3):
        for r in runs.values():
            t = time.perf_counter()
            r["state"], _ = block_until_ready(r["call"](r["state"], r["data"]))
            r["windows"].append(time.perf_counter() - t)
    out: dict[str, Any] = {"batch": int(c.miw.batch_size), "mu0_batch": int(c.miw.mu0_batch_size),
                           "num_functions": int(c.miw.td_dice_multi.num_functions)}
    for name, r in runs.items():
        out[f"{name}_ms"] = 1e3 * statistics.median(r["windows"]) / r["steps"]
    for est in ("td_dice", "td_dice_multi"):
        out[f"{est}_step_per_iteration"] = out[f"{est}_ms"] / out["iteration_no_miw_ms"]
    out["multi_vs_td_dice"] = out["td_dice_multi_ms"] / out["td_dice_ms"]
    return out


# (name, rows, n, reps): `reps` chained (rows, n) @ (n, n) matmuls per window (~0.2-0.4 s on a Zen 4
# core pair); the paper's batch through a 400-wide layer, and a large square one that any bfloat16
# matrix unit (AMX, AVX512-BF16) would speed up.
MATMUL_SHAPES = (("matmul_512x400", 512, 400, 128), ("matmul_2048", 2048, 2048, 4))


def suite_precision(quick: bool) -> dict[str, Any]:
    """float32 against bfloat16 matmul inputs (compute.dtype and compute.model_dtype together) at
    paper sizes: the fused update_step with and without MIW, a block of MIW steps, an ensemble
    training epoch and a 32k-transition rollout of the actor; and bare jitted matmuls, which say
    whether XLA uses the CPU's bfloat16 units at all. Windows of every (figure, dtype)
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
        fit_data = block_until_ready(prepare_fit_data(state.model, jax.random.PRNGKey(1), data.transitions(), None,
                                           cfg.holdout_fraction, cfg.max_holdout))
        epoch = make_epoch_fn(static_from_config(cfg, dt))
        inf = jnp.full((cfg.num_members,), jnp.inf)
        model = jax.tree.map(jnp.copy, state.model)  # `state` is donated by the MIW case
        carry = EpochCarry(model.params, model.opt_state, model.params, inf, inf)
        cases["model_epoch", dt] = dict(call=lambda s, d, epoch=epoch: epoch(s, jax.random.PRNGKey(2), d)[0],
                                        state=carry, data=fit_data, units=cfg.epoch_steps, unit="model steps/s")
    for dt in dtypes:  # what XLA's matmul alone gets from the dtype, apart from the rest of the step
        for name, rows, n, reps in MATMUL_SHAPES:
            rows, n = (rows // 4, n // 4) if quick else (rows, n)
            x = jax.random.normal(jax.random.PRNGKey(3), (rows, n), dt)
            w = (jax.random.normal(jax.random.PRNGKey(4), (n, n)) / np.sqrt(n)).astype(dt)  # keeps |x| steady
            chain = jax.jit(lambda x, w, reps=reps: jax.lax.fori_loop(0, reps, lambda _, x: x @ w, x))
            cases[name, dt] = dict(call=chain, state=x, data=w, units=2.0 * reps * rows * n * n / 1e9, unit="GFLOP/s")
    for case in cases.values():  # compile and warm up
        t = time.perf_counter()
        case["state"] = block_until_ready(case["call"](case["state"], case["data"]))
        case["first_call_s"], case["windows"] = time.perf_counter() - t, []
    rounds = 2 if quick else 5
    for _ in range(rounds):
        for case in cases.values():
            t = time.perf_counter()
            case["state"] = block_until_ready(case["call"](case["state"], case["data"]))
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
