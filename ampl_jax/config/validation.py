"""Config checks run before any work starts: bad values fail with one line naming key and fix.

Also the --config flag of the entry points: ml_collections' own, except that a config file that
is missing or fails to load is reported in one line naming the file and the reason (ml_collections
gives a traceback, or "Error whilst parsing config file" with the reason lost in a traceback).
"""

from __future__ import annotations

import difflib
import importlib.machinery
import importlib.util
import os
from pathlib import Path
import re
import sys
from typing import Any, NoReturn

import ml_collections
from absl import flags


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and what it accepts."""


# Matmul input dtypes of `compute.dtype` / `compute.model_dtype` (precision.dtype maps them to jnp).
COMPUTE_DTYPES = ("float32", "bfloat16")
# What jax.default_matmul_precision accepts (jax 0.10), listed here so that a bad value fails
# before jax is imported; "default" leaves JAX's setting alone (precision.matmul_precision).
MATMUL_PRECISIONS = (
    "default", "high", "highest", "bfloat16", "tensorfloat32", "float32",
    "ANY_F8_ANY_F8_F32", "ANY_F8_ANY_F8_F32_FAST_ACCUM", "ANY_F8_ANY_F8_ANY", "ANY_F8_ANY_F8_ANY_FAST_ACCUM",
    "F16_F16_F16", "F16_F16_F32", "BF16_BF16_BF16", "BF16_BF16_F32", "BF16_BF16_F32_X3", "BF16_BF16_F32_X6",
    "BF16_BF16_F32_X9", "TF32_TF32_F32", "TF32_TF32_F32_X3", "F32_F32_F32", "F64_F64_F64",
)

_CHOICES = {
    "dataset.mu0": ("dataset", "env"),
    "miw.schedule": ("interleaved", "phased", "none"),
    "miw.test_function": ("q", "reward"),
    "miw.estimator": ("td_dice", "vpm", "gendice", "dualdice", "td_dice_multi"),
    "miw.td_dice_multi.features": ("fourier", "relu"),
    "miw.constraint": ("per_tensor", "global"),
    "agent.policy": ("implicit", "tanh_gaussian"),
    "method": ("ampl", "bc", "mopo", "td3bc"),
    "mopo.settings": ("published", "config"),
    "agent.regularizer": ("jsd", "none", "kl_dual"),
    "model.rollout_elite_sampling": ("iid", "balanced"),
    "model.fake_elite_sampling": ("iid", "balanced"),
    "model.seed_batching": ("map", "vmap"),
    "compute.dtype": COMPUTE_DTYPES,
    "compute.model_dtype": COMPUTE_DTYPES,
    "compute.matmul_precision": MATMUL_PRECISIONS,
}

_POSITIVE_INT = (
    "num_seeds", "model.num_members", "model.num_elites", "model.batch_size", "model.epoch_steps",
    "model.patience", "model.max_epochs", "model.refit_max_epochs", "rollout.horizon",
    "rollout.batch_size", "rollout.transitions_per_rollout", "rollout.period", "rollout.buffer_capacity",
    "agent.batch_size", "agent.noise_dim", "agent.actor_update_every", "miw.batch_size",
    "miw.mu0_batch_size", "miw.phased_steps", "miw.vpm.power_iterations", "miw.vpm.inner_steps",
    "miw.td_dice_multi.num_functions",
    "train.total_steps", "train.epoch_length",
    "train.model_retrain_epochs", "train.eval_every", "eval.episodes", "eval.num_action_samples",
    "checkpoint.every", "checkpoint.keep", "td3bc.batch_size", "td3bc.policy_delay",
    "mopo.horizon", "mopo.rollout_batch_size", "mopo.rollout_every", "mopo.model_retain_epochs", "mopo.epoch_length",
)

_POSITIVE_FLOAT = (
    "model.learning_rate", "agent.critic_lr", "agent.actor_lr", "agent.disc_lr", "miw.lr",
    "agent.critic_grad_clip", "miw.grad_clip", "agent.critic_huber_delta", "miw.huber_delta",
    "agent.target_cap", "agent.noise_std", "miw.alpha", "miw.mean_bound",
    "miw.vpm.lr", "miw.vpm.u_lr", "miw.gendice.lr", "miw.gendice.nu_lr", "miw.gendice.u_lr",
    "miw.dualdice.lr", "miw.dualdice.nu_lr", "td3bc.actor_lr", "td3bc.critic_lr", "td3bc.state_norm_eps",
    "miw.td_dice_multi.lr", "miw.td_dice_multi.scale",
)

_NON_NEGATIVE_FLOAT = (
    "miw.vpm.norm_penalty", "miw.vpm.grad_clip_value", "miw.gendice.norm_penalty",
    "miw.gendice.grad_clip_value", "miw.dualdice.grad_clip_value", "td3bc.alpha", "td3bc.policy_noise",
    "td3bc.noise_clip", "mopo.penalty_coef", "miw.td_dice_multi.mass_penalty", "checkpoint.fit_every_seconds",
)

_UNIT_INTERVAL = (
    "agent.gamma", "agent.tau", "agent.actor_tau", "miw.tau", "agent.target_min_weight",
    "agent.q_avg_rate", "rollout.real_min", "rollout.real_decay", "model.holdout_fraction",
    "agent.true_label_low", "td3bc.gamma", "td3bc.tau", "mopo.real_ratio",
)


def _get(config: ml_collections.ConfigDict, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def validate(config: ml_collections.ConfigDict) -> None:
    """Raise ConfigError on the first value that cannot work."""
    for key, choices in _CHOICES.items():
        if _get(config, key) not in choices:
            raise ConfigError(f"config.{key}={_get(config, key)!r} is not one of {', '.join(map(repr, choices))}")
    for key in _POSITIVE_INT:
        v = _get(config, key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"config.{key}={v!r} must be a positive integer")
    for key in _POSITIVE_FLOAT:
        v = _get(config, key)
        if not v > 0:
            raise ConfigError(f"config.{key}={v!r} must be > 0")
    for key in _UNIT_INTERVAL:
        v = _get(config, key)
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"config.{key}={v!r} must lie in [0, 1]")
    f = config.rollout.fixed_real_fraction
    if f != -1.0 and not 0.0 <= f <= 1.0:
        raise ConfigError(f"config.rollout.fixed_real_fraction={f!r} must lie in [0, 1] (or -1 for the schedule)")
    if config.model.num_elites > config.model.num_members:
        raise ConfigError(
            f"config.model.num_elites={config.model.num_elites} exceeds config.model.num_members={config.model.num_members}"
        )
    if len(config.model.weight_decays) != len(config.model.hidden_dims):
        raise ConfigError("config.model.weight_decays needs one value per entry of config.model.hidden_dims")
    if config.rollout.period % config.agent.actor_update_every:
        raise ConfigError(
            f"config.rollout.period={config.rollout.period} must be a multiple of "
            f"config.agent.actor_update_every={config.agent.actor_update_every}"
        )
    if config.method == "mopo" and (config.mopo.rollout_batch_size * config.rollout.period) % config.mopo.rollout_every:
        raise ConfigError(
            f"config.mopo.rollout_batch_size={config.mopo.rollout_batch_size} start states every "
            f"config.mopo.rollout_every={config.mopo.rollout_every} iterations is no whole number per "
            f"config.rollout.period={config.rollout.period}"
        )
    if config.method == "td3bc" and config.rollout.period % config.td3bc.policy_delay:
        raise ConfigError(
            f"config.rollout.period={config.rollout.period} must be a multiple of "
            f"config.td3bc.policy_delay={config.td3bc.policy_delay}"
        )
    if not config.dataset.id or "/" not in config.dataset.id:
        raise ConfigError(f"config.dataset.id={config.dataset.id!r} is not a Minari id such as 'mujoco/walker2d/medium-v0'")
    for key in _NON_NEGATIVE_FLOAT:
        v = _get(config, key)
        if not v >= 0:
            raise ConfigError(f"config.{key}={v!r} must be >= 0")
    for key in ("miw.td_dice_multi.resample", "miw.td_dice_multi.with_q", "miw.td_dice_multi.split_batch_gradient",
                "miw.vpm.output_clipping", "miw.gendice.output_clipping", "miw.dualdice.output_clipping",
                "miw.td_dice_multi.constant"):
        if not isinstance(_get(config, key), bool):
            raise ConfigError(f"config.{key}={_get(config, key)!r} must be True or False")
    if not isinstance(config.miw.td_dice_multi.seed, int) or isinstance(config.miw.td_dice_multi.seed, bool):
        raise ConfigError(f"config.miw.td_dice_multi.seed={config.miw.td_dice_multi.seed!r} must be an integer")
    bounds = tuple(config.agent.gaussian_log_std_bounds)
    if len(bounds) != 2 or not bounds[0] < bounds[1]:
        raise ConfigError(f"config.agent.gaussian_log_std_bounds={bounds!r} must be (low, high) with low < high")
    if config.agent.regularizer == "kl_dual" and not config.agent.weighted_regularizer:
        raise ConfigError("config.agent.regularizer='kl_dual' needs config.agent.weighted_regularizer=True "
                          "(the authors' KL-dual exists in their weighted trainer only)")
    steps = config.checkpoint.keep_steps
    if not isinstance(steps, (tuple, list)) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                       for s in steps):
        raise ConfigError(f"config.checkpoint.keep_steps={steps!r} must be a tuple of steps, e.g. (40000, 100000)")
    if not isinstance(config.model.first_fit_from, str):
        raise ConfigError(f"config.model.first_fit_from={config.model.first_fit_from!r} must be a run's workdir (or '')")
    if not isinstance(config.agent.kl_dual_weighted, bool):
        raise ConfigError(f"config.agent.kl_dual_weighted={config.agent.kl_dual_weighted!r} must be True or False")
    if config.miw.test_function == "reward" and config.miw.estimator != "td_dice":
        raise ConfigError("config.miw.test_function='reward' needs config.miw.estimator='td_dice' "
                          "(the other estimators learn their own test function)")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def load_file(spec: str) -> ml_collections.ConfigDict:
    """The config that `--config=spec` gives: FILE's get_config(), or get_config(ARG) for "FILE:ARG".

    Raises ConfigError naming the file and the reason when it is missing or fails to load.
    """
    path, colon, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path}: {'not a file' if os.path.exists(path) else 'not found'}"
                          f"{_nearby_config_files(path)}")
    try:
        loader = importlib.machinery.SourceFileLoader("_ampl_jax_config_file", path)  # any extension, as ml_collections
        module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
        loader.exec_module(module)
    except Exception as e:  # whatever the file raises (SyntaxError, ImportError, ...), the fix is in the file
        raise ConfigError(f"config file {path}: {_first_line(e)}") from e
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(f"config file {path}: defines no get_config()")
    try:
        config = module.get_config(arg) if colon else module.get_config()
    except Exception as e:
        raise ConfigError(f"config file {path}: {_first_line(e)}") from e
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"config file {path}: get_config() returned a {type(config).__name__}, not a ConfigDict")
    return config


# The repository's configs/ (this file is ampl_jax/config/validation.py in a clone), for a missing
# config file whose own folder does not exist either.
_REPO_CONFIGS = str(Path(__file__).resolve().parents[2] / "configs")


def config_files(directory: str) -> list[str]:
    """The config files of `directory` (its *.py but __init__.py), sorted; [] if it is no folder."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(n for n in names if n.endswith(".py") and n != "__init__.py" and os.path.isfile(
        os.path.join(directory, n)))


def _nearby_config_files(path: str) -> str:
    """For a missing config file: the nearest file name, and the config files of its folder (of the
    repository's configs/ when that folder holds none)."""
    directory, name = os.path.split(path)
    files = config_files(directory or ".")
    if not files and os.path.isdir(_REPO_CONFIGS):
        directory = os.path.relpath(_REPO_CONFIGS)
        directory = _REPO_CONFIGS if directory.startswith("..") else directory
        files = config_files(directory)
    if not files:
        return ""
    near = difflib.get_close_matches(name, files, n=1, cutoff=0.6)
    hint = f"did you mean {os.path.join(directory, near[0])}? " if near else ""
    return f" ({hint}{os.path.join(directory, '')} holds {', '.join(files)})"


class _ConfigFileParser(flags.ArgumentParser):
    """Reads --config's file with `load_file`, locked as config_flags locks it (lock_config=True)."""

    def parse(self, argument: str) -> ml_collections.ConfigDict:
        config = load_file(argument)
        config.lock()
        return config

    def flag_type(self) -> str:
        return "config object"


def define_config_flag(help_string: str = "Path to an ml_collections config file (FILE or FILE:ARG).") -> None:
    """--config with its --config.KEY=VALUE overrides (ml_collections' config_flags), its file read
    by `load_file`; run the parse through `parse_flags` for the one-line errors."""
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, help_string, lock_config=True)
    flags.FLAGS["config"].parser = _ConfigFileParser()  # absl's Flag.parser: what _parse calls


LIST_KEYS_HINT = "`python -m ampl_jax.main --config=FILE --list_keys` lists every key"


def parse_flags(argv: list[str], *, exit_status: int, program: str = "ampl_jax.main") -> list[str]:
    """FLAGS(argv); a flag that does not parse ends the process with one line on stderr and
    `exit_status`: a bad config file by its file and reason, an unknown config key by the nearest
    key, a bad value by the type the key takes, any other by its reason."""
    try:
        return flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
        cause: BaseException | None = e
        while cause is not None and not isinstance(cause, ConfigError):
            cause = cause.__cause__ or cause.__context__  # absl re-raises the parser's error as its own
        if cause is not None:
            exit_with(str(cause), exit_status)
        exit_with(bad_flag_message(argv, e, program), exit_status)


def bad_flag_message(argv: list[str], e: BaseException, program: str = "ampl_jax.main") -> str:
    """One clean line for a flag that did not parse: no escapes, no unbalanced quotes, no newline."""
    overrides = [a for a in argv[1:] if a.startswith("--config.")]
    spec = _config_spec(argv)
    config = None
    if spec and overrides:
        try:
            config = load_file(spec)
        except ConfigError:
            pass
    if config is not None:
        from ampl_jax.config.keys import flat_values

        values = flat_values(config)
        sections = {k.rsplit(".", i)[0] for k in values for i in range(1, k.count(".") + 1)}
        for arg in overrides:
            name, _, value = arg[len("--config."):].partition("=")
            if name not in values and name not in sections:
                near = difflib.get_close_matches(name, list(values), n=1, cutoff=0.6)
                hint = f" (did you mean config.{near[0]}?)" if near else ""
                return f"config.{name} is not a config key{hint}; {LIST_KEYS_HINT}"
        flag = re.match(r"flag --config\.([\w.]+)=", str(e))
        if flag and flag.group(1) in values:
            name = flag.group(1)
            given = next((a.partition("=")[2] for a in overrides if a.partition("=")[0] == f"--config.{name}"), "")
            default = values[name]
            return (f"config.{name}={given} is not {_kind(default)}: an override takes the type of the "
                    f"value in {spec}, here {default!r}")
    return f"bad flag ({_clean(e)}); `python -m {program} --help` lists the flags"


def _config_spec(argv: list[str]) -> str | None:
    """The --config=FILE of argv (the last one given), or None."""
    spec = None
    for i, arg in enumerate(argv[1:], 1):
        if arg.startswith("--config="):
            spec = arg[len("--config="):]
        elif arg == "--config" and i + 1 < len(argv):
            spec = argv[i + 1]
    return spec


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "True or False"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (tuple, list)):
        return "a tuple such as (256, 256)"
    return f"a {type(value).__name__}"


def _clean(e: BaseException) -> str:
    """An exception's reason on one line: a KeyError's own text, not its repr (no escaped quotes or
    newlines)."""
    text = e.args[0] if isinstance(e, KeyError) and e.args and isinstance(e.args[0], str) else str(e)
    if isinstance(e, AttributeError) and e.args and isinstance(e.args[0], KeyError):
        text = _clean(e.args[0])
    text = " ".join(part.strip() for part in text.strip().splitlines() if part.strip())
    return text or type(e).__name__


def exit_with(message: str, status: int) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


# Keys that may change when a run is resumed in the same workdir: none of them changes what the
# steps already taken computed. Extending (or shortening) train.total_steps is the main use.
# train.log_every is gone (nothing read it); runs saved with it still resume.
RESUMABLE_KEYS = frozenset({
    "train.total_steps", "train.log_every", "checkpoint.every", "checkpoint.keep", "dataset.download",
    "eval.one_sample_too",  # extra evaluation columns only
    # where the first fit's progress is saved, or read from: the fit is the same bit for bit
    "checkpoint.fit_every_seconds", "model.first_fit_from", "checkpoint.keep_steps",
})

# Keys added after runs were already saved, with the value that reproduces those runs: a saved
# config without the key equals one holding this value (an older float32 run still resumes).
ADDED_KEYS = {
    "compute.dtype": "float32",
    "compute.model_dtype": "float32",
    "compute.matmul_precision": "default",
    "model.seed_batching": "map",
    "eval.one_sample_too": False,
    # Issue #31. A value may be a function of the saved config (flattened): where the key changed
    # what runs of one kind compute, those runs get the value that reproduces them (then a config
    # holding the new default differs, and the run is refused), every other run the new default.
    # The ablation estimators now clip w's output, as the authors' README runs them.
    **{f"miw.{est}.output_clipping": (lambda saved, est=est: saved.get("miw.output_clipping", False)
                                      if saved.get("miw.estimator") == est else True)
       for est in ("vpm", "gendice", "dualdice")},
    # The Gaussian-policy ablation's log std: clamped into [-20, 2] as the authors' (was squashed into [-5, 2]).
    "agent.gaussian_log_std_bounds": lambda saved: ("tanh squash into [-5, 2] (before #31)"
                                                    if saved.get("agent.policy") == "tanh_gaussian" else [-20.0, 2.0]),
    # td_dice_multi tests the constant too (and draws its keys independently, N6).
    "miw.td_dice_multi.constant": lambda saved: saved.get("miw.estimator") != "td_dice_multi",
    "miw.td_dice_multi.mass_penalty": lambda saved: 0.0 if saved.get("miw.estimator") == "td_dice_multi" else 0.1,
    # MOPO as its authors ran it: its horizon, penalty (all members, MOPO's units), termination,
    # rollout volume and SAC details; MOPO runs saved before are refused, nothing else reads these.
    "mopo.settings": lambda saved: ("AMPL's horizon, penalty_coef, elites' penalty in scaled units (before #31)"
                                    if saved.get("method") == "mopo" else "published"),
    "mopo.horizon": 5,
    "mopo.rollout_batch_size": 50_000,
    "mopo.rollout_every": 1000,
    "mopo.model_retain_epochs": 5,
    "mopo.epoch_length": 1000,
    "mopo.target_entropy": -3.0,
    "agent.kl_dual_weighted": True,  # read by agent.regularizer="kl_dual" only, new with it
    "checkpoint.fit_every_seconds": 600,
    "model.first_fit_from": "",
    "checkpoint.keep_steps": [],
}


def to_dict(config: ml_collections.ConfigDict) -> dict:
    """The resolved config as plain JSON data (tuples become lists), as written to config.json."""
    import json

    return json.loads(config.to_json_best_effort())


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _added(flat: dict) -> dict:
    """ADDED_KEYS' values for a (flattened) config that lacks them."""
    return {k: (v(flat) if callable(v) else v) for k, v in ADDED_KEYS.items()}


def differences(saved: dict, new: dict, ignore: frozenset[str] = RESUMABLE_KEYS) -> list[str]:
    """'key: saved -> new' for every key (dotted) whose value differs, other than `ignore`d ones."""
    flat_saved, flat_new = _flatten(saved), _flatten(new)
    a, b = {**_added(flat_saved), **flat_saved}, {**_added(flat_new), **flat_new}
    out = []
    for key in sorted(set(a) | set(b)):
        if key in ignore:
            continue
        missing = "<absent>"
        va, vb = a.get(key, missing), b.get(key, missing)
        if va != vb:
            out.append(f"{key}: {va!r} -> {vb!r}")
    return out


def take(cls: type, section: ml_collections.ConfigDict, **given: Any) -> Any:
    """A frozen hyperparameter dataclass from the config section's keys of its field names (lists as
    tuples) plus `given`: what a jitted step closes over instead of the whole config."""
    import dataclasses

    values = {}
    for f in dataclasses.fields(cls):
        if f.name in given:
            values[f.name] = given[f.name]
        else:
            v = section[f.name]
            values[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**values)
