"""XLA's cost model of an AMPL run, and a roofline projection of a paper run on accelerators.

    python -m ampl_jax.lab.cost_model                      # paper and protocol sizes, 1 and 8 seeds
    python -m ampl_jax.lab.cost_model --sizes=paper --seeds=1,8 --utilisation=0.5 --out=cost.json

Nothing is timed: every figure comes from compiling programs here (on whatever backend JAX has,
usually the CPU) and reading XLA's `cost_analysis()` (FLOPs, bytes accessed) and
`memory_analysis()` (argument, output, temporary and aliased bytes).

Components, per policy iteration of AMPL (the default MIW schedule, "interleaved"):
- update: one fused iteration (critic, GAN, actor every k-th, MIW step), the mean of the
  iteration with and without the actor step, as the update step's scan runs them; the MIW step
  and the iteration without MIW are reported apart;
- rollouts, amortised: one rollout batch (`rollout.batch_size` starts x h model steps) times the
  batches that fill `transitions_per_rollout` (a lower bound: no rollout ends early), over
  `rollout.period` iterations;
- ensemble fit, per epoch: `model.epoch_steps` minibatch steps, the holdout evaluation and the
  snapshots; a paper run fits first and refits `len(range(R, total, R))` times (R: the refit
  period in iterations), for a number of epochs that early stopping decides (assumed: flags);
- MIW refit weights: w over the whole dataset, once per refit.

XLA's cost analysis counts a loop's body once, whatever its trip count, so each component is
compiled as one body with no loop left (scans and the PRNG's rounds unrolled, `_unrolled_loops`) and
multiplied by its trip count here; the run's own programs (`ampl_jax.lab.programs`) are compiled
for their memory. Several seeds are vmapped, as a run vmaps them (fits: `seed_batching="vmap"`).

The projection is a roofline: time = max(FLOPs / peak, bytes / bandwidth) / utilisation per
program, with peaks and bandwidths from the vendors' published figures (`DEVICES`); beside it a
floor of `ops x per-op overhead` (XLA:CPU's count of kernels per program, a proxy for the
kernels an accelerator launches). XLA:CPU's fusion, and so its bytes accessed and op count,
differs from XLA:GPU's and XLA:TPU's, and FLOPs of a float32 matmul do not say which units run
it: read the projection as an order of magnitude, not a measurement.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import re
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ampl_jax import methods
from ampl_jax.config import precision
from ampl_jax.lab.programs import abstract, run_programs, synthetic_data

ENV_ID = "Walker2d-v5"
# Rows of ampl/walker2d/medium-replay-v1 (the benchmark's walker2d medium-replay cell: 261,908
# train + 8,092 holdout in its model_fits.jsonl); the paper's D4RL walker2d-medium-replay has ~302k.
TRANSITIONS = 270_000
HORIZON = 5  # the paper's horizon for walker2d medium-replay and medium-expert (the largest)


@dataclasses.dataclass(frozen=True)
class Device:
    """Published per-chip figures: peak FLOP/s for float32 matmuls run exactly, for float32 matmuls
    at JAX's default precision, and for bfloat16 inputs; HBM bandwidth and capacity."""

    name: str
    fp32: float  # FLOP/s, float32 exactly (GPU: CUDA cores; TPU: 6 bf16 passes, Precision.HIGHEST)
    default: float  # FLOP/s, float32 at JAX's default precision (GPU: TF32 tensor cores; TPU: 1 bf16 pass)
    bf16: float  # FLOP/s, bfloat16 inputs (compute.dtype = "bfloat16"), dense
    bandwidth: float  # bytes/s
    memory: float  # bytes
    kind: str  # "gpu" | "tpu": which per-op overhead applies
    source: str


DEVICES = (
    Device("A100 SXM 80GB", 19.5e12, 156e12, 312e12, 2.039e12, 80e9, "gpu",
           "NVIDIA A100 Tensor Core GPU datasheet: FP32 19.5 TFLOPS, TF32 156, BF16 312 (dense), "
           "HBM2e 2,039 GB/s, 80 GB"),
    Device("H100 SXM 80GB", 67e12, 494.7e12, 989.4e12, 3.35e12, 80e9, "gpu",
           "NVIDIA H100 Tensor Core GPU datasheet: FP32 67 TFLOPS, TF32 989 and BF16 1,979 with "
           "sparsity (half dense), HBM3 3.35 TB/s, 80 GB"),
    Device("TPU v4 (1 chip)", 275e12 / 6, 275e12, 275e12, 1.2e12, 32 * 2**30, "tpu",
           "cloud.google.com/tpu/docs/v4: 275 TFLOPS (bf16) per chip, HBM2 32 GiB, 1,200 GBps; "
           "float32 exactly = 6 bf16 passes (no published figure)"),
    Device("TPU v5e (1 chip)", 197e12 / 6, 197e12, 197e12, 819e9, 16 * 2**30, "tpu",
           "cloud.google.com/tpu/docs/v5e: 197 TFLOPS (bf16) per chip, HBM 16 GiB, 819 GBps; "
           "float32 exactly = 6 bf16 passes (no published figure)"),
)
MODES = ("fp32", "default", "bf16")

# Opcodes that launch nothing (bookkeeping of the HLO); every other instruction of the entry
# computation and of loop bodies is counted as one op.
_FREE_OPS = frozenset({"parameter", "constant", "get-tuple-element", "tuple", "bitcast", "after-all",
                       "partition-id", "replica-id", "opt-barrier", "while", "call", "conditional"})
_COMPUTATION = re.compile(r"^(ENTRY )?%(\S+) .*\{$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%\S+ = .*?\s([a-z][a-z0-9-]*)\(")
_CALLEES = re.compile(r"(?:body|condition|to_apply|true_computation|false_computation)=%([\w.-]+)"
                      r"|branch_computations=\{([^}]*)\}")


def op_count(hlo_text: str) -> tuple[int, int]:
    """(ops, while loops) of a compiled HLO module: instructions outside fusions that do work,
    in the entry computation and every computation it runs (loop bodies, calls, branches)."""
    comps: dict[str, list[str]] = {}
    entry, current = None, None
    for line in hlo_text.splitlines():
        m = _COMPUTATION.match(line)
        if m:
            current = m.group(2)
            comps[current] = []
            entry = current if m.group(1) else entry
        elif line.startswith("}"):
            current = None
        elif current is not None:
            comps[current].append(line)
    seen, todo, ops, loops = set(), [entry], 0, 0
    while todo:
        name = todo.pop()
        if name is None or name in seen or name not in comps:
            continue
        seen.add(name)
        for line in comps[name]:
            m = _INSTRUCTION.match(line)
            if not m:
                continue
            opcode = m.group(1)
            loops += opcode == "while"
            ops += opcode not in _FREE_OPS
            if opcode in ("while", "call", "conditional"):
                for single, several in _CALLEES.findall(line):
                    todo += [single] if single else [c.strip().lstrip("%") for c in several.split(",")]
    return ops, loops


_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4, "f32": 4,
                "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16}
_ARRAY = re.compile(r"\b(" + "|".join(_DTYPE_BYTES) + r")\[([\d,]*)\]")
_DEFINITION = re.compile(r"^\s*(ROOT )?%(\S+) = (.*?)\s([a-z][a-z0-9-]*)\(([^)]*)\)")


def _type_bytes(type_str: str) -> int:
    return sum(_DTYPE_BYTES[d] * int(np.prod([int(x) for x in dims.split(",") if x] or [1]))
               for d, dims in _ARRAY.findall(type_str))


def indexed_overcount(hlo_text: str) -> float:
    """Bytes that XLA:CPU's cost analysis charges to fused gathers and scatters beyond the rows
    they touch. A fusion's operand is charged whole; a gather or scatter fused with its array
    (a dataset, the 640k-row buffer) touches only its rows. For an array that a fusion uses
    only through gathers, the excess is array - rows gathered; only through a scatter (into
    itself, in place), array - updates, and the same for the written array when the scatter is
    the fusion's result: what is left is XLA's own rule for an unfused gather (rows read and
    written) and scatter (3 x updates)."""
    fusions = set(re.findall(r"\bfusion\(.*?calls=%([\w.-]+)", hlo_text))
    excess, current, defs = 0.0, None, {}

    def settle(defs: dict) -> float:
        users: dict[str, list] = {}
        for name, (_, _, opcode, operands) in defs.items():
            for pos, operand in enumerate(operands):
                users.setdefault(operand, []).append((name, opcode, pos))

        def effective(name):  # users seen through bitcasts
            for user, opcode, pos in users.get(name, []):
                if opcode == "bitcast":
                    yield from effective(user)
                else:
                    yield user, opcode, pos

        total = 0.0
        for name, (root, type_str, opcode, _) in defs.items():
            if opcode != "parameter":
                continue
            uses, size = list(effective(name)), _type_bytes(type_str)
            if not uses or any(pos != 0 for _, _, pos in uses):
                continue
            if all(op == "gather" for _, op, _ in uses):
                rows = sum(_type_bytes(defs[u][1]) for u, _, _ in uses)
                total += max(0.0, size - rows)
            elif len(uses) == 1 and uses[0][1] == "scatter":
                user = uses[0][0]
                updates = sum(_type_bytes(defs[o][1]) for o in defs[user][3][2:] if o in defs)
                total += max(0.0, size - updates)
                if defs[user][0]:  # the scattered array is the fusion's result: written whole, by XLA's count
                    total += max(0.0, _type_bytes(defs[user][1]) - updates)
        return total

    for line in hlo_text.splitlines():
        m = _COMPUTATION.match(line)
        if m:
            current, defs = m.group(2), {}
            continue
        if line.startswith("}"):
            if current in fusions:
                excess += settle(defs)
            current = None
            continue
        if current in fusions:
            d = _DEFINITION.match(line)
            if d:
                defs[d.group(2)] = (bool(d.group(1)), d.group(3), d.group(4), re.findall(r"%([\w.-]+)", d.group(5)))
    return excess


def analyse(compiled) -> dict[str, float]:
    """FLOPs, bytes accessed, ops and loops of a compiled program, and its memory. `bytes` is
    XLA's count less `indexed_overcount` (`bytes_xla`: XLA's count as it is)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    text = compiled.as_text()
    ops, loops = op_count(text)
    mem = compiled.memory_analysis()
    raw = float(cost.get("bytes accessed", 0.0))
    out = {"flops": float(cost.get("flops", 0.0)), "bytes": raw - indexed_overcount(text), "bytes_xla": raw,
           "transcendentals": float(cost.get("transcendentals", 0.0)), "ops": ops, "loops": loops}
    if mem is not None:
        out.update(argument_bytes=mem.argument_size_in_bytes, output_bytes=mem.output_size_in_bytes,
                   alias_bytes=mem.alias_size_in_bytes, temp_bytes=mem.temp_size_in_bytes,
                   peak_bytes=(mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
                               - mem.alias_size_in_bytes))
    return out


@contextlib.contextmanager
def _unrolled_loops():
    """While tracing and lowering inside, every `jax.lax.scan` called through the module attribute
    (the world model's rollout and fit) is fully unrolled, and the threefry PRNG lowers on the CPU
    as it does on accelerators (unrolled rounds; jax rolls them into a 5-trip loop on the CPU), so
    XLA's count covers every step. The PRNG's CPU rule is jax-internal: without it the random bits
    are undercounted (a few % of an iteration's FLOPs), nothing else."""
    original = jax.lax.scan
    jax.lax.scan = functools.partial(original, unroll=True)
    rng = None
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32 as tf

        mlir.register_lowering(tf.threefry2x32_p, tf._threefry2x32_lowering_rule, platform="cpu")
        rng = (mlir, tf)
    except (ImportError, AttributeError):
        pass
    try:
        yield
    finally:
        jax.lax.scan = original
        if rng is not None:
            mlir, tf = rng
            mlir.register_lowering(tf.threefry2x32_p, tf._threefry2x32_cpu_lowering_rule, platform="cpu")


def _tree_bytes(tree: Any) -> int:
    return int(sum(np.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def size_configs() -> dict[str, tuple[str, ml_collections.ConfigDict]]:
    """name -> (description, config): the paper's defaults and the CPU benchmark protocol's, both
    on the walker2d medium-replay cell's horizon (5)."""
    from ampl_jax.config.defaults import get_config

    paper = get_config()
    paper.rollout.horizon = HORIZON
    out = {"paper": (f"paper sizes: ampl_jax/config/defaults.py, rollout.horizon = {HORIZON}", paper)}
    try:
        from configs import benchmark
    except ImportError:  # an installed copy without the repository's configs/
        return out
    out["protocol"] = ("CPU protocol: configs/benchmark.py:walker-medium_replay (its `protocol`, h = 5)",
                       benchmark.get_config("walker-medium_replay"))
    return out


def component_costs(config: ml_collections.ConfigDict, data, info, seeds: int) -> dict[str, dict]:
    """XLA's analysis of one call of each component body (no loops left but the rollout's batch
    loop), for `seeds` vmapped seeds."""
    from ampl_jax.methods.ampl.miw_step import make_dataset_weights, miw_step
    from ampl_jax.methods.ampl.update import iteration, model_rollouts
    from ampl_jax.world_model.fit import (EpochCarry, epoch_body, init_model_state, make_seeds_epoch_fn,
                                          prepare_fit_data, static_from_config)

    config = ml_collections.ConfigDict(config.to_dict())
    config.num_seeds = 1
    agent = methods.build_agent(config, data, info)
    no_miw = ml_collections.ConfigDict(config.to_dict())
    no_miw.miw.schedule = "phased"
    agent_no_miw = methods.build_agent(no_miw, data, info)
    transitions = data.transitions()
    model = jax.eval_shape(lambda: init_model_state(jax.random.PRNGKey(0), transitions, config.model))
    state = jax.eval_shape(lambda: methods.get("ampl").init_state(agent, jax.random.PRNGKey(0),
                                                                  init_model_state(jax.random.PRNGKey(0), transitions,
                                                                                   config.model)))
    stacked = seeds > 1
    per_seed = lambda t: jax.tree.map(lambda x: jax.ShapeDtypeStruct((seeds, *x.shape), x.dtype), abstract(t)) \
        if stacked else abstract(t)
    vm = lambda f, axes: jax.vmap(f, in_axes=axes) if stacked else f
    key, a_data, a_state = per_seed(jax.random.PRNGKey(0)), abstract(data), per_seed(state)

    bodies: dict[str, tuple[Any, tuple]] = {}
    for name, ag in (("iteration", agent), ("iteration_no_miw", agent_no_miw)):
        for with_actor in (True, False):
            fn = vm(lambda s, d, k, ag=ag, a=with_actor: iteration(ag, s, d, k, a), (0, None, 0))
            bodies[f"{name}_{'actor' if with_actor else 'plain'}"] = (jax.jit(fn, donate_argnums=0),
                                                                     (a_state, a_data, key))
    # the state donated, as the update step donates it (else XLA copies every leaf it returns unchanged)
    bodies["miw_step"] = (jax.jit(vm(lambda s, d, k: miw_step(agent, s, d, k), (0, None, 0)), donate_argnums=0),
                          (a_state, a_data, key))
    bodies["rollout_batch"] = (jax.jit(vm(lambda s, d, k: model_rollouts(agent, s, d, k), (0, None, 0)),
                                       donate_argnums=0), (a_state, a_data, key))
    weights = make_dataset_weights(agent, chunk=max(int(data.observations.shape[0]), 1))  # one chunk: no loop
    bodies["refit_weights"] = (jax.jit(vm(weights, (0, None, None))),
                               (a_state.miw, a_data.observations, a_data.actions))
    fit_data = jax.eval_shape(lambda m: prepare_fit_data(m, jax.random.PRNGKey(0), transitions, None,
                                                         float(config.model.holdout_fraction),
                                                         int(config.model.max_holdout)), model)
    inf = jnp.full((int(config.model.num_members),), jnp.inf)
    carry = EpochCarry(model.params, model.opt_state, model.params, inf, inf)
    for steps in (1, 2):  # per step = cost(2) - cost(1); the rest of an epoch = 2 cost(1) - cost(2)
        static = static_from_config(config.model, config.compute.model_dtype)._replace(epoch_steps=steps)
        if stacked:
            fn, args = make_seeds_epoch_fn(static, "vmap"), (per_seed(carry), key, per_seed(fit_data),
                                                             jax.ShapeDtypeStruct((seeds,), jnp.bool_))
        else:
            fn, args = jax.jit(epoch_body(static)), (abstract(carry), key, abstract(fit_data))
        bodies[f"fit_epoch_{steps}_steps"] = (fn, args)

    out = {}
    with _unrolled_loops(), warnings.catch_warnings():
        # a body returns part of the state (the rollout: the buffer): the rest of the donation goes unused
        warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
        lowered = {name: fn.lower(*args) for name, (fn, args) in bodies.items()}
    for name, low in lowered.items():
        out[name] = analyse(low.compile())
    return out


def run_memory(config: ml_collections.ConfigDict, data, info, seeds: int) -> dict[str, Any]:
    """Memory of the run's own programs (update step, fit epoch, refit weights) for `seeds` seeds,
    and the peak device memory of a run: the largest program, with the train state and the data
    resident while the fit and the weights run."""
    config = ml_collections.ConfigDict(config.to_dict())
    config.num_seeds = seeds
    programs = {p.name: p for p in run_programs(config, data, info)}
    update = programs["update_step"]
    state_bytes, data_bytes = _tree_bytes(update.args[0]), _tree_bytes(update.args[1])
    out: dict[str, Any] = {"state_bytes": state_bytes, "data_bytes": data_bytes}
    peak = 0
    for name in ("update_step", "fit_epoch", "refit_weights"):
        if name not in programs:
            continue
        p = programs[name]
        a = analyse(p.fn.lower(*p.args).compile())
        resident = 0 if name == "update_step" else state_bytes + data_bytes
        a["run_peak_bytes"] = a["peak_bytes"] + resident
        out[name] = {k: a[k] for k in ("argument_bytes", "output_bytes", "alias_bytes", "temp_bytes", "peak_bytes",
                                        "run_peak_bytes")}
        peak = max(peak, a["run_peak_bytes"])
    out["peak_bytes"] = peak
    return out


def run_counts(config: ml_collections.ConfigDict, first_fit_epochs: int, refit_epochs: int) -> dict[str, float]:
    """How often each component runs in a whole run of `config`."""
    r, t = config.rollout, config.train
    refit_every = t.model_retrain_epochs * t.epoch_length
    refits = len(range(refit_every, t.total_steps, refit_every)) if config.miw.schedule != "none" else 0
    batches = math.ceil(r.transitions_per_rollout / (r.batch_size * r.horizon))
    return {"iterations": float(t.total_steps), "actor_every": float(config.agent.actor_update_every),
            "rollouts": math.ceil(t.total_steps / r.period), "batches_per_rollout": batches, "period": r.period,
            "refits": refits, "fit_epochs": first_fit_epochs + refits * refit_epochs,
            "first_fit_epochs": first_fit_epochs, "refit_epochs": refit_epochs,
            "epoch_steps": int(config.model.epoch_steps)}


def per_call(bodies: dict[str, dict], counts: dict[str, float]) -> dict[str, dict[str, float]]:
    """flops / bytes / ops of one call of each component as a run makes it (an iteration: the mean
    over the actor schedule; a rollout: its batches; a fit epoch: epoch_steps steps)."""
    k = counts["actor_every"]
    mix = lambda a, b, field: (bodies[a][field] + (k - 1) * bodies[b][field]) / k
    e1, e2 = bodies["fit_epoch_1_steps"], bodies["fit_epoch_2_steps"]
    out = {}
    for f in ("flops", "bytes", "ops"):
        step = e2[f] - e1[f]
        out.setdefault("iteration", {})[f] = mix("iteration_actor", "iteration_plain", f)
        out.setdefault("iteration_no_miw", {})[f] = mix("iteration_no_miw_actor", "iteration_no_miw_plain", f)
        out.setdefault("miw_step", {})[f] = bodies["miw_step"][f]
        out.setdefault("rollout", {})[f] = counts["batches_per_rollout"] * bodies["rollout_batch"][f]
        out.setdefault("fit_epoch", {})[f] = (e1[f] - step) + counts["epoch_steps"] * step
        out.setdefault("refit_weights", {})[f] = bodies["refit_weights"][f]
    return out


def per_iteration(calls: dict[str, dict], counts: dict[str, float]) -> dict[str, dict[str, float]]:
    """Each component's flops and bytes per policy iteration of the whole run (amortised)."""
    n = counts["iterations"]
    times = {"iteration": n, "rollout": counts["rollouts"], "fit_epoch": counts["fit_epochs"],
             "refit_weights": counts["refits"]}
    out = {name: {f: calls[name][f] * c / n for f in ("flops", "bytes")} for name, c in times.items()}
    out["miw_step (in iteration)"] = {f: calls["miw_step"][f] for f in ("flops", "bytes")}
    out["total"] = {f: sum(out[c][f] for c in times) for f in ("flops", "bytes")}
    return out


def project(calls: dict[str, dict], counts: dict[str, float], device: Device, mode: str, utilisation: float,
            overhead_s: float) -> dict[str, float]:
    """Seconds of a whole run: per component, the roofline time / utilisation, and the ops floor."""
    peak = getattr(device, mode)
    times = {"iteration": counts["iterations"], "rollout": counts["rollouts"], "fit_epoch": counts["fit_epochs"],
             "refit_weights": counts["refits"]}
    roof = sum(c * max(calls[n]["flops"] / peak, calls[n]["bytes"] / device.bandwidth) / utilisation
               for n, c in times.items())
    floor = sum(c * calls[n]["ops"] * overhead_s for n, c in times.items())
    both = sum(c * max(max(calls[n]["flops"] / peak, calls[n]["bytes"] / device.bandwidth) / utilisation,
                       calls[n]["ops"] * overhead_s) for n, c in times.items())
    return {"roofline_s": roof, "ops_floor_s": floor, "projection_s": both}


def seeds_that_fit(mem1: dict, mem8: dict, capacity: float, headroom: float = 0.9) -> int:
    """Seeds whose peak memory fits `headroom` of `capacity`, linear in the seeds between 1 and 8."""
    slope = (mem8["peak_bytes"] - mem1["peak_bytes"]) / 7
    base = mem1["peak_bytes"] - slope
    return max(0, int((headroom * capacity - base) // slope)) if slope > 0 else 0


def model(sizes: list[str], seeds: list[int], first_fit_epochs: int, refit_epochs: int,
          transitions: int) -> dict[str, Any]:
    """Every figure of the cost model, per size and seed count (the JSON this module writes)."""
    data, info = synthetic_data(transitions, ENV_ID, num_init=1000)
    configs = size_configs()
    out: dict[str, Any] = {"env": {**precision.cpu_info(), "jax": jax.__version__, "backend": jax.default_backend(),
                                   "device_kind": jax.devices()[0].device_kind},
                           "dataset": {"env_id": ENV_ID, "transitions": transitions}, "sizes": {}}
    for name in sizes:
        if name not in configs:
            raise SystemExit(f"unknown size {name!r} (known: {', '.join(configs)}; 'protocol' needs the "
                             "repository's configs/ on the path: run from the repository root)")
        desc, config = configs[name]
        first, refit = ((first_fit_epochs, refit_epochs) if name == "paper"
                        else (int(config.model.max_epochs), int(config.model.refit_max_epochs)))
        counts = run_counts(config, first, refit)
        entry: dict[str, Any] = {"description": desc, "counts": counts, "seeds": {}}
        for s in seeds:
            print(f"[cost model] {name}, {s} seed(s): compiling ...", flush=True)
            bodies = component_costs(config, data, info, s)
            calls = per_call(bodies, counts)
            entry["seeds"][str(s)] = {"bodies": bodies, "per_call": calls, "per_iteration": per_iteration(calls, counts),
                                      "memory": run_memory(config, data, info, s)}
        out["sizes"][name] = entry
    return out


def _g(x: float) -> str:
    return f"{x / 1e9:.3g}"


def markdown(result: dict[str, Any], utilisation: float, overhead_us: dict[str, float]) -> str:
    lines = []
    for name, entry in result["sizes"].items():
        c = entry["counts"]
        lines += ["", f"### {entry['description']}", "",
                  f"{int(c['iterations']):,} iterations, a rollout every {c['period']} "
                  f"({c['batches_per_rollout']} batch(es) of starts x h), {c['refits']} refits, "
                  f"{c['fit_epochs']} fit epochs of {c['epoch_steps']} steps ({c['first_fit_epochs']} first + "
                  f"{c['refit_epochs']} per refit{', assumed' if name == 'paper' else ', the caps'}).", "",
                  "| component | " + " | ".join(f"{s} seed(s): GFLOP | GB accessed" for s in entry["seeds"]) + " |",
                  "|---|" + "---|---|" * len(entry["seeds"])]
        rows = [("update: one iteration (MIW interleaved)", "per_call", "iteration"),
                ("  of which the MIW step", "per_call", "miw_step"),
                ("  the iteration without MIW (schedule phased)", "per_call", "iteration_no_miw"),
                ("rollouts: one rollout (per period)", "per_call", "rollout"),
                ("ensemble fit: one epoch", "per_call", "fit_epoch"),
                ("MIW refit weights: one refit", "per_call", "refit_weights"),
                ("per iteration: update", "per_iteration", "iteration"),
                ("per iteration: rollouts, amortised", "per_iteration", "rollout"),
                ("per iteration: fits, amortised", "per_iteration", "fit_epoch"),
                ("per iteration: refit weights, amortised", "per_iteration", "refit_weights"),
                ("**per iteration: total**", "per_iteration", "total")]
        for label, group, comp in rows:
            cells = " | ".join(f"{_g(v[group][comp]['flops'])} | {_g(v[group][comp]['bytes'])}"
                               for v in entry["seeds"].values())
            lines.append(f"| {label} | {cells} |")
        for s, v in entry["seeds"].items():
            pc = v["per_call"]
            lines.append(f"\nXLA:CPU ops (kernels) per call, {s} seed(s): iteration {pc['iteration']['ops']:.0f}, "
                         f"rollout {pc['rollout']['ops']:.0f}, fit epoch {pc['fit_epoch']['ops']:.0f}, "
                         f"refit weights {pc['refit_weights']['ops']:.0f}.")
        mem = {s: v["memory"] for s, v in entry["seeds"].items()}
        lines += ["", "| memory (XLA:CPU's analysis) | " + " | ".join(f"{s} seed(s)" for s in mem) + " |",
                  "|---|" + "---|" * len(mem)]
        for label, key in (("train state (GB)", "state_bytes"), ("offline data (GB)", "data_bytes")):
            lines.append(f"| {label} | " + " | ".join(_g(m[key]) for m in mem.values()) + " |")
        for prog in ("update_step", "fit_epoch", "refit_weights"):
            lines.append(f"| {prog}: arguments + outputs + temporaries - aliased (GB) | "
                         + " | ".join(_g(m[prog]["peak_bytes"]) for m in mem.values()) + " |")
        lines.append("| **peak of a run** (largest program; state and data resident during fits) (GB) | "
                     + " | ".join(_g(m["peak_bytes"]) for m in mem.values()) + " |")
    return "\n".join(lines)


def projection_markdown(result: dict[str, Any], utilisation: float, overhead_us: dict[str, float]) -> str:
    """The projection table of each size that has 1 and 8 seeds."""
    lines = []
    for name, entry in result["sizes"].items():
        if not {"1", "8"} <= set(entry["seeds"]):
            continue
        one, eight = entry["seeds"]["1"], entry["seeds"]["8"]
        worst = max(project(eight["per_call"], entry["counts"], d, "fp32", utilisation,
                            overhead_us[d.kind] * 1e-6)["projection_s"] for d in DEVICES)
        unit, per = ("h", 3600.0) if worst >= 3600 else ("min", 60.0)
        lines += ["", f"**PROJECTION, not a measurement** ({entry['description']}; whole run: "
                  f"{int(entry['counts']['iterations']):,} iterations, {entry['counts']['refits']} refits; "
                  f"utilisation {utilisation:.0%} of peak; op floor {overhead_us['gpu']:g} us per op on a GPU, "
                  f"{overhead_us['tpu']:g} us on a TPU):", "",
                  f"| device | float32 matmuls at | peak TFLOP/s | 1 seed: roofline {unit} | 1 seed: op floor {unit} | "
                  f"1 seed: projection {unit} | 8 seeds: projection {unit} (per seed) | seeds that fit in HBM |",
                  "|---|---|---|---|---|---|---|---|"]
        for d in DEVICES:
            fit = seeds_that_fit(one["memory"], eight["memory"], d.memory)
            for mode in MODES:
                label = {"fp32": "float32 exactly", "default": "JAX's default precision" +
                         (" (TF32)" if d.kind == "gpu" else " (1 bf16 pass)"), "bf16": "bfloat16 inputs"}[mode]
                p1 = project(one["per_call"], entry["counts"], d, mode, utilisation, overhead_us[d.kind] * 1e-6)
                p8 = project(eight["per_call"], entry["counts"], d, mode, utilisation, overhead_us[d.kind] * 1e-6)
                h = lambda sec: f"{sec / per:.2g}"
                lines.append(f"| {d.name} | {label} | {getattr(d, mode) / 1e12:.0f} | {h(p1['roofline_s'])} | "
                             f"{h(p1['ops_floor_s'])} | {h(p1['projection_s'])} | "
                             f"{h(p8['projection_s'])} ({h(p8['projection_s'] / 8)}) | {fit} |")
    return "\n".join(lines)


def calibrated(result: dict[str, Any], measured_its: float, label: str) -> str:
    """A machine's measured rate of the fused step without MIW (paper sizes, 1 seed) read through
    the model: the FLOP/s it implies, and a paper run at that FLOP/s."""
    entry = result["sizes"].get("paper")
    if not entry or "1" not in entry["seeds"]:
        return ""
    one, counts = entry["seeds"]["1"], entry["counts"]
    per_it = one["per_call"]["iteration_no_miw"]["flops"] + one["per_iteration"]["rollout"]["flops"]
    rate = measured_its * per_it
    total = one["per_iteration"]["total"]["flops"] * counts["iterations"]
    no_miw_total = total - one["per_call"]["miw_step"]["flops"] * counts["iterations"]
    return (f"\n{label}: {measured_its:g} it/s of the fused step without MIW (paper sizes, 1 seed) = "
            f"{rate / 1e9:.0f} GFLOP/s by XLA's count ({per_it / 1e9:.2f} GFLOP per iteration with rollouts). "
            f"A paper run at that FLOP/s (a projection calibrated by the measurement): {total / rate / 3600:.1f} h "
            f"per seed with the interleaved MIW, {no_miw_total / rate / 3600:.1f} h without it (fits included, "
            f"evaluations not).")


def main(argv=None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m ampl_jax.lab.cost_model", description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="paper,protocol", help="comma list of: paper, protocol")
    ap.add_argument("--seeds", default="1,8", help="comma list of vmapped seed counts (the projection needs 1 and 8)")
    ap.add_argument("--utilisation", type=float, default=0.5, help="fraction of the roofline a program reaches")
    ap.add_argument("--gpu_op_us", type=float, default=5.0, help="assumed overhead per op (kernel) on a GPU, us")
    ap.add_argument("--tpu_op_us", type=float, default=2.0, help="assumed overhead per op on a TPU, us")
    ap.add_argument("--first_fit_epochs", type=int, default=100, help="paper sizes: assumed epochs of the first fit")
    ap.add_argument("--refit_epochs", type=int, default=20, help="paper sizes: assumed epochs of each refit")
    ap.add_argument("--transitions", type=int, default=TRANSITIONS, help="dataset rows (Walker2d shapes)")
    ap.add_argument("--measured_its", type=float, default=None,
                    help="a machine's measured it/s of the fused step without MIW at paper sizes (python -m "
                         "ampl_jax.lab.bench --suite=update: fused_no_miw), read through the model")
    ap.add_argument("--measured_label", default="measured", help="what and where --measured_its was measured")
    ap.add_argument("--out", default="", help="write the JSON here too")
    ap.add_argument("--from_json", default="", help="print the tables of an earlier --out (no compiling): "
                                                    "e.g. at another --utilisation or op overhead")
    args = ap.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            result = json.load(f)
        args.transitions = result["dataset"]["transitions"]
    else:
        result = model([s.strip() for s in args.sizes.split(",") if s.strip()],
                       [int(s) for s in args.seeds.split(",") if s.strip()], args.first_fit_epochs,
                       args.refit_epochs, args.transitions)
    overhead = {"gpu": args.gpu_op_us, "tpu": args.tpu_op_us}
    result["assumptions"] = {"utilisation": args.utilisation, "op_overhead_us": overhead,
                             "devices": [dataclasses.asdict(d) for d in DEVICES]}
    env = result["env"]
    print(f"\nXLA cost model on {env['backend']} ({env['cpu_model']}), jax {env['jax']}; dataset: {ENV_ID} shapes, "
          f"{args.transitions:,} transitions")
    print(markdown(result, args.utilisation, overhead))
    print(projection_markdown(result, args.utilisation, overhead))
    if args.measured_its:
        result["measured"] = {"its": args.measured_its, "label": args.measured_label}
        print(calibrated(result, args.measured_its, args.measured_label))
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1, default=float)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
