"""Mixed precision (`compute` config section): bfloat16 matmul inputs, float32 everything else."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ampl_jax import networks
from ampl_jax.config import precision, validation as configuration
from ampl_jax.methods.ampl.state import init_train_state
from ampl_jax.methods import build_agent as build
from ampl_jax.methods.ampl.update import make_update_step
from ampl_jax.world_model.ensemble import init_model_state, member_apply
from ampl_jax.world_model.fit import fit
from tests import tiny_config
from tests.methods.ampl.test_update import _data


def _float_leaves(tree) -> list[tuple[str, np.dtype]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(jax.tree_util.keystr(p), np.asarray(x).dtype) for p, x in flat
            if np.issubdtype(np.asarray(x).dtype, np.floating) or np.asarray(x).dtype == jnp.bfloat16]


def _bf16_config():
    config = tiny_config.get_config()
    config.compute.dtype = "bfloat16"
    config.compute.model_dtype = "bfloat16"
    return config


def test_mlp_bfloat16_keeps_float32_params_outputs_and_gradients():
    x = jax.random.normal(jax.random.PRNGKey(0), (64, 7))
    f32 = networks.MLP((32, 32), 3)
    bf16 = networks.MLP((32, 32), 3, dtype=jnp.bfloat16)
    params = f32.init(jax.random.PRNGKey(1), x)
    assert jax.tree.structure(params) == jax.tree.structure(bf16.init(jax.random.PRNGKey(1), x))
    out = bf16.apply(params, x)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, f32.apply(params, x), atol=3e-2)
    assert not np.array_equal(out, f32.apply(params, x))  # the bfloat16 path really ran
    grads = jax.grad(lambda p: jnp.mean(bf16.apply(p, x) ** 2))(params)
    assert all(dt == jnp.float32 for _, dt in _float_leaves(grads))
    assert "bf16" in jax.jit(bf16.apply).lower(params, x).as_text()
    assert "bf16" not in jax.jit(f32.apply).lower(params, x).as_text()


def test_member_apply_bfloat16_sums_in_float32():
    data, _ = _data()
    model = init_model_state(jax.random.PRNGKey(0), data.transitions(), tiny_config.get_config().model)
    p = jax.tree.map(lambda a: a[0], model.params)
    x = jax.random.normal(jax.random.PRNGKey(1), (16, 14))
    mean, logstd = member_apply(p, x, jnp.bfloat16)
    assert mean.dtype == logstd.dtype == jnp.float32
    ref_mean, ref_logstd = member_apply(p, x)
    np.testing.assert_allclose(mean, ref_mean, atol=2e-2)
    np.testing.assert_allclose(logstd, ref_logstd, atol=2e-2)
    text = jax.jit(lambda p, x: member_apply(p, x, jnp.bfloat16)).lower(p, x).as_text()
    assert "xbf16>) -> tensor<16x" in text and "xf32>" in text  # bf16 operands, f32 results


def test_bfloat16_model_fit_finite_and_float32():
    config = _bf16_config()
    data, _ = _data()
    model = init_model_state(jax.random.PRNGKey(1), data.transitions(), config.model)
    fitted, info = fit(model, jax.random.PRNGKey(2), data.transitions(), None, config.model, max_epochs=1,
                       dtype=config.compute.model_dtype)
    assert np.isfinite(info["holdout_losses"]).all()
    dtypes = _float_leaves(jax.device_get(fitted))
    assert dtypes and all(dt == np.float32 for _, dt in dtypes), [x for x in dtypes if x[1] != np.float32]


def test_bfloat16_update_step_finite_and_state_stays_float32():
    config = _bf16_config()
    data, info = _data()
    agent = build(config, data, info)
    model = init_model_state(jax.random.PRNGKey(1), data.transitions(), config.model)
    state0 = init_train_state(agent, jax.random.PRNGKey(0), model)
    actor0 = np.asarray(jax.tree.leaves(state0.actor)[0])
    step = make_update_step(agent)
    assert "bf16" in step.lower(state0, data).as_text()
    state, metrics = step(state0, data)
    for name, value in metrics.items():
        assert np.isfinite(value), name
    dtypes = _float_leaves(jax.device_get(state))
    assert dtypes and all(dt == np.float32 for _, dt in dtypes), [x for x in dtypes if x[1] != np.float32]
    assert not np.array_equal(np.asarray(jax.tree.leaves(state.actor)[0]), actor0)


@pytest.mark.parametrize("key,value", [
    ("dtype", "float16"), ("dtype", "bf16"), ("model_dtype", "float64"), ("matmul_precision", "fastest"),
])
def test_bad_compute_values_are_refused_in_one_line(key, value):
    config = tiny_config.get_config()
    config.compute[key] = value
    with pytest.raises(configuration.ConfigError) as e:
        configuration.validate(config)
    assert str(e.value).startswith(f"config.compute.{key}={value!r} is not one of")
    assert "\n" not in str(e.value)


def test_every_accepted_matmul_precision_is_one_jax_accepts():
    for name in configuration.MATMUL_PRECISIONS:
        with precision.matmul_precision(name):
            expected = None if name == "default" else name
            assert jax.config.jax_default_matmul_precision == expected
    assert jax.config.jax_default_matmul_precision is None


def test_saved_config_without_compute_section_still_matches_float32():
    config = tiny_config.get_config()
    saved = configuration.to_dict(config)
    del saved["compute"]
    assert configuration.differences(saved, configuration.to_dict(config)) == []
    config.compute.dtype = "bfloat16"
    assert configuration.differences(saved, configuration.to_dict(config)) == [
        "compute.dtype: 'float32' -> 'bfloat16'"]


def test_bench_reads_cpu_model_and_bf16_flags(tmp_path):
    from ampl_jax.config.precision import cpu_info  # bench.py defines absl flags at import

    block = "processor\t: {}\nmodel name\t: Example CPU\nflags\t\t: fpu avx2 {}\n\n"
    path = tmp_path / "cpuinfo"
    path.write_text(block.format(0, "avx512f avx512_bf16") + block.format(1, "avx512f avx512_bf16"))
    info = cpu_info(str(path))
    assert info["cpu_model"] == "Example CPU"
    assert info["cpu_bf16_flags"] == {"amx_bf16": False, "avx512_bf16": True} and info["cpu_has_bf16"]
    path.write_text(block.format(0, ""))
    assert not cpu_info(str(path))["cpu_has_bf16"]
