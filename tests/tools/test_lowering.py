"""Every program a run compiles lowers for GPU and TPU, with no accelerator here (issue #32).

For each method, with one seed and with two (vmapped over the seed axis and sharded over the
seed mesh, as `SeedRuntime.compile` runs them: one CPU device here), every jitted function of
the run (`ampl_jax.lab.programs.run_programs`: update step, fit epoch, MIW phase and refit weights,
action selection, diagnostics, divergence guard) is exported with
`jax.export.export(fn, platforms=("cuda", "tpu"))` at the tiny test sizes. A program fails when
the export fails (a primitive with no GPU or TPU lowering, a host callback: jax refuses to
lower a Python callback for several platforms), when its module calls a custom call outside
`ALLOWED_CUSTOM_CALLS` (e.g. LAPACK's or DUCC's CPU kernels, a host callback), when it has side
effects, or when a shape is not static (symbolic dimensions, `?` dimensions, dynamic-shape ops).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ampl_jax.config import validation as configuration
from ampl_jax.lab.programs import run_programs, synthetic_data
from tests import tiny_config
from tests.runs import ROOT as REPO_ROOT

PLATFORMS = ("cuda", "tpu")

# custom_call targets a program may contain: the SPMD partitioner's sharding annotations, which
# every backend's XLA consumes. None appears today (the seed mesh has one device here); anything
# else, e.g. lapack_*, ducc_*, xla_*_python_*_callback or a shape assertion, fails the test.
ALLOWED_CUSTOM_CALLS = frozenset({"Sharding", "SPMDFullToShardShape", "SPMDShardToFullShape"})

# StableHLO ops that only exist for shapes known at run time
DYNAMIC_SHAPE_OPS = ("dynamic_broadcast_in_dim", "dynamic_reshape", "dynamic_iota", "dynamic_pad", "dynamic_gather",
                     "dynamic_conv", "real_dynamic_slice", "get_dimension_size", "set_dimension_size")

CUSTOM_CALL = re.compile(r"custom_call @([\w.$-]+)|call_target_name = \"([^\"]+)\"")


def lowering_problems(fn, args, platforms=PLATFORMS, modules: dict | None = None) -> list[str]:
    """What keeps `fn(*args)` from running on `platforms` as compiled here; [] when nothing.
    `modules`, if given, receives the exported module's text under the key "text"."""
    try:
        exported = jax.export.export(fn, platforms=platforms)(*args)
    except Exception as e:  # noqa: BLE001 - the reason is the finding
        return [f"export for {platforms} failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}"]
    text = exported.mlir_module()
    if modules is not None:
        modules["text"] = text
    problems = []
    targets = {a or b for a, b in CUSTOM_CALL.findall(text)}
    if targets - ALLOWED_CUSTOM_CALLS:
        problems.append(f"custom calls {sorted(targets - ALLOWED_CUSTOM_CALLS)}")
    if exported.ordered_effects or exported.unordered_effects:
        problems.append(f"side effects {exported.ordered_effects + exported.unordered_effects}")
    avals = exported.in_avals + exported.out_avals
    symbolic = [a.str_short() for a in avals if not all(isinstance(d, int) for d in a.shape)]
    if symbolic:
        problems.append(f"symbolic shapes {symbolic}")
    if re.search(r"tensor<[^>]*\?", text):
        problems.append("dynamic (?) dimensions in the module")
    ops = [op for op in DYNAMIC_SHAPE_OPS if f"stablehlo.{op}" in text]
    if ops:
        problems.append(f"dynamic-shape ops {ops}")
    return problems


# (method, seeds, config changes): every method alone and with two seeds; AMPL's two-seed run is
# "phased" (the MIW phase program and the no-MIW step), MOPO's fits its seeds with "vmap" (AMPL's
# with the default "map"), so both fit_seeds programs are covered; two AMPL runs take the ablations
# that change the step's structure (saddle-point MIW estimators with their dual players, VPM's
# power-method counters, the tanh-Gaussian policy, the w-weighted regulariser, the KL-dual one).
MOPO = {"mopo.settings": "config", "mopo.rollout_batch_size": 1000}  # no published settings here; 4 starts a period
CASES = {
    "ampl-1": ("ampl", 1, {}),
    "ampl-2-phased": ("ampl", 2, {"miw.schedule": "phased"}),
    "ampl-1-ablations": ("ampl", 1, {"miw.estimator": "gendice", "agent.policy": "tanh_gaussian",
                                     "agent.weighted_regularizer": True}),
    "ampl-1-kl-dual": ("ampl", 1, {"miw.estimator": "vpm", "agent.regularizer": "kl_dual",
                                   "agent.weighted_regularizer": True}),
    "mopo-1": ("mopo", 1, MOPO),
    "mopo-2-vmap-fit": ("mopo", 2, {**MOPO, "model.seed_batching": "vmap"}),
    "td3bc-1": ("td3bc", 1, {}),
    "td3bc-2": ("td3bc", 2, {}),
    "bc-1": ("bc", 1, {}),
    "bc-2": ("bc", 2, {}),
}

EXPECTED = {  # the programs each run must yield (a lost one would go unchecked)
    "ampl": {"update_step", "fit_epoch", "refit_weights", "select_action", "select_action_one_sample",
             "diagnostics_on_data", "diagnostics_on_policy", "nonfinite_guard"},
    "mopo": {"update_step", "fit_epoch", "select_action", "nonfinite_guard"},
    "td3bc": {"update_step", "select_action", "nonfinite_guard"},
    "bc": {"update_step", "select_action", "nonfinite_guard"},
}


@pytest.fixture(scope="module")
def data():
    return synthetic_data(400, "Hopper-v5")


@pytest.mark.parametrize("case", list(CASES))
def test_every_program_lowers_for_gpu_and_tpu(case, data):
    method, seeds, changes = CASES[case]
    config = tiny_config.get_config()
    config.method, config.num_seeds = method, seeds
    config.eval.one_sample_too = True
    for key, value in changes.items():
        section, name = key.split(".")
        config[section][name] = value
    configuration.validate(config)  # only configs a run would accept
    programs = run_programs(config, *data)
    names = {p.name for p in programs}
    expected = EXPECTED[method] | ({"miw_phase"} if changes.get("miw.schedule") == "phased" else set())
    assert expected <= names, f"missing programs {sorted(expected - names)}"
    failures, modules = {}, {}
    for p in programs:
        modules[p.name] = {}
        if problems := lowering_problems(p.fn, p.args, modules=modules[p.name]):
            failures[p.name] = problems
    assert not failures, f"programs that would not run as compiled on {PLATFORMS}: {failures}"
    if seeds > 1:  # vmapped over seeds and sharded over the seed mesh, as the run compiles it
        step = next(p for p in programs if p.name == "update_step")
        assert step.args[0].step.shape == (seeds,)
        assert '#sdy.sharding<@mesh, [{"seeds"}' in modules["update_step"]["text"], "the step is not seed-sharded"


def test_the_check_catches_callbacks_cpu_kernels_and_dynamic_shapes():
    """The checker itself: a host callback, a CPU-only custom call and a symbolic shape each fail."""
    x = jax.ShapeDtypeStruct((3, 3), jnp.float32)
    callback = jax.jit(lambda v: jax.pure_callback(np.asarray, jax.ShapeDtypeStruct((3, 3), jnp.float32), v))
    assert lowering_problems(callback, (x,))
    assert lowering_problems(callback, (x,), platforms=("cuda",))
    eigh = jax.jit(lambda v: jnp.linalg.eigh(v)[0])
    cpu_problems = lowering_problems(eigh, (x,), platforms=("cpu",))  # LAPACK on a CPU
    assert any("lapack" in p for p in cpu_problems), cpu_problems
    dynamic = jax.ShapeDtypeStruct(jax.export.symbolic_shape("b, 3"), jnp.float32)
    assert lowering_problems(jax.jit(lambda v: jnp.sum(v, axis=0)), (dynamic,))
    assert lowering_problems(jax.jit(lambda v: jnp.sum(v, axis=0)), (x,)) == []


# Every jax.jit of the modules a training run executes, per file: a new one fails here until
# ampl_jax/lab/programs.py yields it (or it is listed as not compiled by a run) and the count is updated.
RUN_MODULES = ("ampl_jax/train.py", "ampl_jax/runtime.py", "ampl_jax/distributed.py", "ampl_jax/methods",
               "ampl_jax/world_model")
JITS = {
    "ampl_jax/train.py": 1,  # make_nonfinite_check's `finite`: nonfinite_guard
    "ampl_jax/distributed.py": 2,  # make_seeded_step, with and without a mesh: update_step (several seeds)
    "ampl_jax/runtime.py": 1,  # SeedRuntime.compile, one seed: update_step
    "ampl_jax/world_model/fit.py": 3,  # make_epoch_fn, make_seeds_epoch_fn map / vmap: fit_epoch
    "ampl_jax/methods/ampl/__init__.py": 2,  # the hook's weights over seeds, vmap / map: refit_weights
    "ampl_jax/methods/ampl/miw_step.py": 2,  # make_miw_phase (tools; runs compile build_miw_phase), weights
    "ampl_jax/methods/ampl/update.py": 2,  # make_update_step (tools), select: select_action(_one_sample)
    "ampl_jax/methods/ampl/diagnostics.py": 2,  # on_data, on_policy
    "ampl_jax/methods/bc.py": 2,  # make_update_step (tools), select_action
    "ampl_jax/methods/td3bc.py": 2,
    "ampl_jax/methods/mopo.py": 2,
}


def test_every_jit_of_a_run_is_accounted_for():
    root = REPO_ROOT  # the repository (tests/runs.py)
    found = {}
    for entry in RUN_MODULES:
        path = root / entry
        for f in sorted([path] if path.is_file() else path.rglob("*.py")):
            n = len(re.findall(r"\bjax\.jit\b", f.read_text()))
            if n:
                found[str(f.relative_to(root))] = n
    assert found == JITS, ("jax.jit calls changed in the modules a run executes: make ampl_jax/lab/programs.py "
                           f"yield the new program and update JITS here; found {found}")
