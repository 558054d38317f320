"""The XLA cost model (ampl_jax.lab.cost_model, issue #32) at tiny sizes: every component is compiled
with no loop left but the rollout's batch loop (XLA counts a loop body once), the amortisation
arithmetic, the op counter and the projection's roofline."""

import jax
import jax.numpy as jnp
import pytest

from ampl_jax.lab import cost_model as cm
from ampl_jax.lab.programs import synthetic_data
from tests import tiny_config


def test_xla_counts_a_loop_body_once_and_unrolled_loops_in_full():
    """Why the model compiles loop-free bodies: a 10-step scan counts as one matmul."""
    x = jnp.ones((64, 64))
    # a new function for each trace: jit reuses its trace of a function it has seen
    scan = lambda: lambda x: jax.lax.scan(lambda c, _: (c @ x, None), x, None, length=10)[0]
    rolled = cm.analyse(jax.jit(scan()).lower(x).compile())
    with cm._unrolled_loops():
        unrolled = cm.analyse(jax.jit(scan()).lower(x).compile())
    assert rolled["flops"] == pytest.approx(2 * 64**3, rel=1e-3) and rolled["loops"] == 1
    assert unrolled["flops"] == pytest.approx(10 * 2 * 64**3, rel=1e-3) and unrolled["loops"] == 0
    assert jax.lax.scan is not None and "unroll" not in getattr(jax.lax.scan, "keywords", {})  # restored


def test_component_bodies_are_loop_free_and_amortise():
    config = tiny_config.get_config()
    data, info = synthetic_data(300, "Hopper-v5")
    bodies = cm.component_costs(config, data, info, 1)
    for name, b in bodies.items():
        assert b["flops"] > 0 and b["ops"] > 0, name
        assert b["loops"] == (1 if name == "rollout_batch" else 0), (name, b["loops"])
    assert bodies["iteration_actor"]["flops"] > bodies["iteration_plain"]["flops"]  # the actor's gradient
    assert bodies["iteration_plain"]["flops"] > bodies["iteration_no_miw_plain"]["flops"]  # the MIW step
    assert bodies["fit_epoch_2_steps"]["flops"] > bodies["fit_epoch_1_steps"]["flops"]
    counts = cm.run_counts(config, first_fit_epochs=2, refit_epochs=1)
    assert counts["refits"] == len(range(12, 24, 12)) == 1  # refit every 3 epochs of 4 iterations, 24 in all
    calls = cm.per_call(bodies, counts)
    step = bodies["fit_epoch_2_steps"]["flops"] - bodies["fit_epoch_1_steps"]["flops"]
    assert calls["fit_epoch"]["flops"] == pytest.approx(bodies["fit_epoch_1_steps"]["flops"]
                                                        + (config.model.epoch_steps - 1) * step)
    per_it = cm.per_iteration(calls, counts)
    assert per_it["total"]["flops"] == pytest.approx(sum(per_it[k]["flops"] for k in
                                                         ("iteration", "rollout", "fit_epoch", "refit_weights")))
    h100 = next(d for d in cm.DEVICES if d.name.startswith("H100"))
    slow, fast = (cm.project(calls, counts, h100, mode, 0.5, 5e-6) for mode in ("fp32", "bf16"))
    assert slow["roofline_s"] >= fast["roofline_s"] > 0
    assert slow["projection_s"] >= max(slow["roofline_s"], slow["ops_floor_s"]) * 0.999


def test_seeds_that_fit_is_linear_between_one_and_eight():
    one, eight = {"peak_bytes": 2e9}, {"peak_bytes": 9e9}  # 1 GB per seed, 1 GB shared
    assert cm.seeds_that_fit(one, eight, 80e9) == 71  # 0.9 * 80 GB
