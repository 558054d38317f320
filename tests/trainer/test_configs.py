"""Every shipped config file loads and passes validation (the values a user runs first)."""

import os
import re

import pytest

from ampl_jax.config import defaults as config_default, validation as configuration
from ampl_jax.config.defaults import LOCAL_DATA_VERSION
from tests.runs import ROOT as REPO_ROOT

ROOT = str(REPO_ROOT)  # the repository (tests/runs.py)
CASES = [(name, None) for name in sorted(os.listdir(os.path.join(ROOT, "configs")))
         if name.endswith(".py") and name not in ("__init__.py", "cpu_scale.py")]
CASES += [("cpu_scale.py", "hopper"), ("cpu_scale.py", "walker")]


@pytest.mark.parametrize("name,arg", CASES)
def test_config_file_validates(name, arg):
    config = configuration.load_file(os.path.join(ROOT, "configs", name) + (f":{arg}" if arg else ""))
    configuration.validate(config)
    assert config.train.total_steps > 0 and config.dataset.id


@pytest.mark.parametrize("text,arg,reason", [
    (None, "", "not found"),
    ("def get_config(:\n", "", "SyntaxError: invalid syntax"),
    ("import no_such_module_x\n", "", "ModuleNotFoundError: No module named 'no_such_module_x'"),
    ("X = 1\n", "", "defines no get_config()"),
    ("def get_config():\n    return {}\n", ":x", "TypeError: get_config() takes 0 positional arguments"),
    ("def get_config():\n    return {}\n", "", "get_config() returned a dict, not a ConfigDict"),
])
def test_config_file_that_does_not_load_names_file_and_reason(tmp_path, text, arg, reason):
    path = tmp_path / "c.py"
    if text is not None:
        path.write_text(text)
    with pytest.raises(configuration.ConfigError) as err:
        configuration.load_file(f"{path}{arg}")
    assert str(err.value).startswith(f"config file {path}: {reason}") and "\n" not in str(err.value)


def test_config_file_argument_after_the_colon():
    c = configuration.load_file(os.path.join(ROOT, "configs", "cpu_scale.py") + ":walker")
    assert c.dataset.fallback_id == f"ampl/walker2d/medium-v{LOCAL_DATA_VERSION['walker2d']}"


def test_cpu_scale_tasks_use_the_local_medium_datasets():
    from configs import cpu_scale

    for task, family in (("hopper", "hopper"), ("walker", "walker2d")):
        c = cpu_scale.get_config(task)
        assert c.dataset.fallback_id == f"ampl/{family}/medium-v{LOCAL_DATA_VERSION[family]}" and c.num_seeds == 3
    with pytest.raises(ValueError, match="unknown cpu_scale task"):
        cpu_scale.get_config("ant")


@pytest.mark.parametrize("key,value,match", [
    ("features", "rbf", "is not one of"), ("num_functions", 0, "positive integer"),
    ("scale", -1.0, "must be > 0"), ("lr", 0.0, "must be > 0"),
])
def test_td_dice_multi_bad_values_fail_in_one_line(key, value, match):
    from configs.default import get_config

    config = get_config()
    config.miw.estimator = "td_dice_multi"
    config.miw.td_dice_multi[key] = value
    with pytest.raises(configuration.ConfigError, match=match) as err:
        configuration.validate(config)
    assert f"miw.td_dice_multi.{key}" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("key,value,needle", [
    ("mopo.real_ratio", 1.5, "config.mopo.real_ratio=1.5 must lie in [0, 1]"),
    ("mopo.penalty_coef", -1.0, "config.mopo.penalty_coef=-1.0 must be >= 0"),
    ("agent.policy", "gaussian", "config.agent.policy='gaussian' is not one of 'implicit', 'tanh_gaussian'"),
    ("miw.estimator", "dice", "config.miw.estimator='dice' is not one of"),
    ("rollout.period", 5, "config.rollout.period=5 must be a multiple of config.agent.actor_update_every=2"),
])
def test_agent_settings_are_checked_by_validate(key, value, needle):
    """The checks that make_agent and the update step once made themselves."""
    from configs.default import get_config

    config = get_config()
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(configuration.ConfigError, match=re.escape(needle)):
        configuration.validate(config)


def test_benchmark_cells_use_their_family_and_the_papers_horizon():
    from configs import benchmark

    c = benchmark.get_config("walker-medium_replay")
    assert (c.dataset.id, c.dataset.create_policy, c.dataset.create_env) == (
        f"ampl/walker2d/medium-replay-v{LOCAL_DATA_VERSION['walker2d']}", "medium-replay", "Walker2d-v5")
    assert c.rollout.horizon == 5 and c.eval.episodes == 10 and c.num_seeds == 3
    assert benchmark.get_config("hopper-medium_expert").rollout.horizon == 3
    configuration.validate(c)
    with pytest.raises(ValueError, match="unknown benchmark cell"):
        benchmark.get_config("hopper-expert")


def test_long_protocol_runs_the_papers_phases_at_their_absolute_lengths():
    """Issue #29: 200k iterations; GAN-only to 40k, real data only to 45k, 0.1 less every 5k down
    to 0.5 from 65k on (the paper's epochs 46 and 66), the paper's early stopping uncapped, and
    three w-weighted refits after the warm start; the 20k protocol's networks."""
    import jax.numpy as jnp

    from ampl_jax.methods.ampl.update import real_fraction
    from configs import benchmark

    c = benchmark.get_config("hopper-medium_expert-long")
    short = benchmark.get_config("hopper-medium_expert")
    configuration.validate(c)
    assert c.train.total_steps == 200_000 and c.num_seeds == 3
    assert c.agent.warm_start_epochs * c.train.epoch_length == 40_000
    frac = {s: float(real_fraction(jnp.array(s // c.train.epoch_length + 1), c.rollout))
            for s in (44_999, 45_000, 49_999, 50_000, 64_999, 65_000, 199_999)}
    assert frac == pytest.approx({44_999: 1.0, 45_000: 0.9, 49_999: 0.9, 50_000: 0.8, 64_999: 0.6,
                                  65_000: 0.5, 199_999: 0.5})
    refit = c.train.model_retrain_epochs * c.train.epoch_length
    refits = [s for s in range(refit, c.train.total_steps, refit)]
    assert refits == [50_000, 100_000, 150_000]
    defaults = config_default.get_config().model
    for key in ("epoch_steps", "patience", "improvement_threshold", "max_epochs", "refit_max_epochs"):
        assert c.model[key] == defaults[key], key
    for key in ("agent.hidden_dims", "agent.batch_size", "rollout.horizon", "rollout.transitions_per_rollout",
                "bc.hidden_dims", "eval.episodes", "eval.one_sample_too", "dataset.id"):
        section, name = key.split(".")
        assert c[section][name] == short[section][name], key
    assert c.train.eval_every == c.checkpoint.every == 10_000
    with pytest.raises(ValueError, match="unknown benchmark cell"):
        benchmark.get_config("hopper-medium_expert-longer")


def test_sitting_protocol_is_the_long_one_with_one_seed_and_capped_fits():
    """Issue #29: what a 3-hour sitting can finish; only the seed count and the fit caps differ
    from `-long`, and the caps still leave the paper's patience rule in force before them."""
    from configs import benchmark

    long, sitting = (benchmark.get_config(f"walker-medium_replay-{p}") for p in ("long", "sitting"))
    configuration.validate(sitting)
    assert (sitting.num_seeds, sitting.model.max_epochs, sitting.model.refit_max_epochs) == (1, 60, 20)
    assert (sitting.model.patience, sitting.model.epoch_steps) == (long.model.patience, long.model.epoch_steps)
    flat = lambda c: {f"{s}.{k}": v for s in c for k, v in (c[s].items() if hasattr(c[s], "items") else [("", c[s])])}
    differ = {k for k, v in flat(long).items() if flat(sitting)[k] != v}
    assert differ == {"num_seeds.", "model.max_epochs", "model.refit_max_epochs"}
