"""Settings of `python -m ampl_jax.lab.miw_check`: its flags, their checks, the estimators it compares,
and the config of the AMPL run whose checkpoints give the AMPL target policies.

Options travel as one plain dict (`opts_from_flags`), so tests call `check.run` without flags.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from ampl_jax.lab.miw_check import OptionError

# Estimators compared: label -> overrides of the AMPL run's config (dotted keys).
VARIANTS: dict[str, dict[str, Any]] = {
    "td_dice": {"miw.estimator": "td_dice"},  # the paper's: Adam 1e-6, test function Q1
    "td_dice_lr1e-4": {"miw.estimator": "td_dice", "miw.lr": 1e-4},  # same, at td_dice_multi's rate
    "td_dice_multi": {"miw.estimator": "td_dice_multi"},
    "vpm": {"miw.estimator": "vpm"},
    "gendice": {"miw.estimator": "gendice"},
    "dualdice": {"miw.estimator": "dualdice"},
}
DEFAULT_ESTIMATORS = ",".join(VARIANTS)
DEFAULT_POLICIES = "behaviour,mix:medium:expert:0.25,ampl:1000,ampl:8000"


def dataset_id(env: str, behaviour: str, steps: int, seed: int) -> str:
    """The Minari id of the check's dataset: one per (env, behaviour, size, seed)."""
    family = env.split("-")[0].lower()
    return f"miwcheck/{family}/{behaviour}-n{steps}-s{seed}-v0"


def ampl_config(opts: dict[str, Any]) -> ml_collections.ConfigDict:
    """The AMPL run of the check: the quick start (`config_default.cpu_budget`) on the check's dataset,
    with --hidden networks, --ampl_steps iterations, a checkpoint every --checkpoint_every, one short
    evaluation at the end, the check's MIW batch sizes (also those of the run's own interleaved
    TD-DICE), and a smaller world model than the quick start's 7 x 4x200 (its fit dominated the
    run's CPU time; the check needs the run's policies, not a good score)."""
    from ampl_jax.config import defaults as config_default

    c = config_default.cpu_budget(config_default.get_config())  # the quick start's budget; its dataset is set below
    c.seed = opts["seed"]
    c.dataset.id = dataset_id(opts["env"], opts["behaviour"], opts["dataset_steps"], opts["seed"])
    c.dataset.create_if_missing = True
    c.dataset.create_env = opts["env"]
    c.dataset.create_policy = opts["behaviour"]
    c.dataset.create_steps = opts["dataset_steps"]
    c.agent.hidden_dims = tuple(opts["hidden"])
    c.miw.batch_size = opts["miw_batch"]
    c.miw.mu0_batch_size = opts["mu0_batch"]
    c.train.total_steps = opts["ampl_steps"]
    c.train.eval_every = opts["ampl_steps"]
    c.eval.episodes = 2
    c.model.hidden_dims = tuple(opts["model_hidden"])
    c.model.weight_decays = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5)[:len(c.model.hidden_dims)]
    c.model.max_epochs = opts["model_epochs"]
    c.checkpoint.every = opts["checkpoint_every"]
    c.checkpoint.keep = 1000
    for key, value in opts.get("ampl_overrides", {}).items():  # tests: a tiny run
        _assign(c, key, value)
    return c


def variant_config(run_config: ml_collections.ConfigDict, name: str, miw_steps: int) -> ml_collections.ConfigDict:
    """The run's config with estimator `name`'s overrides, as one "phased" block of `miw_steps`."""
    c = run_config.copy_and_resolve_references()
    for key, value in VARIANTS[name].items():
        _assign(c, key, value)
    c.miw.schedule = "phased"
    c.miw.phased_steps = miw_steps
    return c


def _assign(c: ml_collections.ConfigDict, dotted: str, value: Any) -> None:
    node = c
    *path, leaf = dotted.split(".")
    for p in path:
        node = node[p]
    node[leaf] = value


def validate(opts: dict[str, Any]) -> None:
    """Refuse, in one line, options the check cannot run with (before anything is made or trained)."""
    from ampl_jax.lab.miw_check.policies import parse_policies, snapshot_params

    unknown = [e for e in opts["estimators"] if e not in VARIANTS]
    if unknown or not opts["estimators"]:
        raise OptionError(f"--estimators {','.join(unknown) or '(none)'}: choose one or more of {', '.join(VARIANTS)}")
    positive = ("dataset_steps", "model_epochs", "ampl_steps", "checkpoint_every", "fqe_steps", "miw_steps",
                "miw_batch", "mu0_batch", "truth_episodes", "clf_epochs", "clf_patience")
    for name in positive:
        if opts[name] < 1:
            raise OptionError(f"--{name}={opts[name]}: must be at least 1")
    for name in ("hidden", "model_hidden", "clf_hidden"):
        if not opts[name] or min(opts[name]) < 1:
            raise OptionError(f"--{name}={','.join(map(str, opts[name]))}: give positive layer sizes, e.g. 64,64")
    if opts["truth_horizon"] < 0 or opts["clf_lr"] <= 0 or opts["clf_weight_decay"] < 0:
        raise OptionError("--truth_horizon and --clf_weight_decay must be >= 0, --clf_lr > 0")
    if not 2 <= opts["clf_folds"] <= opts["truth_episodes"]:
        raise OptionError(f"--clf_folds={opts['clf_folds']}: need 2 <= folds <= --truth_episodes "
                          f"({opts['truth_episodes']}; every fold holds whole episodes)")
    if opts["dataset_steps"] < opts["clf_folds"] * 1000:
        raise OptionError(f"--dataset_steps={opts['dataset_steps']}: the classifier's folds deal blocks of 1000 "
                          f"rows, so at least {opts['clf_folds'] * 1000} for {opts['clf_folds']} folds")
    import gymnasium

    from ampl_jax.config import validation as configuration
    from ampl_jax.datagen.make_dataset import families

    try:
        gymnasium.spec(opts["env"])
    except gymnasium.error.Error:
        raise OptionError(f"--env={opts['env']}: not a registered Gymnasium id (e.g. Hopper-v5)") from None
    if opts["behaviour"] not in families():
        raise OptionError(f"--behaviour={opts['behaviour']}: choose one of {', '.join(families())}")
    config = ampl_config(opts)
    try:
        configuration.validate(config)
    except configuration.ConfigError as e:
        raise OptionError(f"the AMPL run's config: {e}") from None
    steps = checkpoint_steps(config)
    for spec in parse_policies(opts["policies"], opts["behaviour"]):
        if spec.kind == "snapshot":
            snapshot_params(opts["env"], spec)  # shipped, and of one shape
        if spec.kind == "ampl" and spec.step not in steps:
            shown = ", ".join(map(str, steps[:6])) + (", ..." if len(steps) > 6 else "")
            raise OptionError(f"policy ampl:{spec.step}: the AMPL run saves checkpoints at steps {shown} "
                              f"(--checkpoint_every rounded up to its rollout period, and the last)")


def checkpoint_steps(config: ml_collections.ConfigDict) -> list[int]:
    """The steps the AMPL run (train.run) saves checkpoints at: 0, every `checkpoint.every` rounded up
    to whole rollout periods, and the last period's end."""
    period = config.rollout.period
    every = -(-config.checkpoint.every // period) * period
    last = -(-config.train.total_steps // period) * period
    return sorted({0, last, *range(every, last + 1, every)})


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise OptionError(f"{text!r}: give comma-separated integers, e.g. 64,64") from None


def opts_from_flags(f) -> dict[str, Any]:
    """The parsed absl flags as the plain dict `check.run` takes."""
    return {
        "workdir": f.workdir, "out": f.out, "minari_dir": f.minari_dir, "seed": f.seed, "env": f.env,
        "behaviour": f.behaviour, "dataset_steps": f.dataset_steps, "hidden": _ints(f.hidden),
        "model_hidden": _ints(f.model_hidden), "model_epochs": f.model_epochs, "ampl_steps": f.ampl_steps,
        "checkpoint_every": f.checkpoint_every, "policies": f.policies, "fqe_steps": f.fqe_steps,
        "miw_steps": f.miw_steps, "miw_batch": f.miw_batch, "mu0_batch": f.mu0_batch,
        "estimators": [e for e in f.estimators.split(",") if e], "truth_episodes": f.truth_episodes,
        "truth_horizon": f.truth_horizon, "clf_hidden": _ints(f.clf_hidden), "clf_epochs": f.clf_epochs,
        "clf_patience": f.clf_patience, "clf_weight_decay": f.clf_weight_decay, "clf_lr": f.clf_lr,
        "clf_folds": f.clf_folds,
    }


def define_flags() -> None:
    """The command's flags (at run time, not import time: importing this module defines nothing)."""
    from absl import flags

    if "miw_steps" in flags.FLAGS:
        return
    d = flags
    d.DEFINE_string("workdir", "runs/miw_check", "Cache: the dataset (minari/), the AMPL run (ampl_run/), outputs.")
    d.DEFINE_string("out", "", "JSON output (default <workdir>/miw_check.json).")
    d.DEFINE_string("minari_dir", "", "Minari store for the dataset (default <workdir>/minari; "
                    "MINARI_DATASETS_PATH is set to it).")
    d.DEFINE_integer("seed", 0, "Seed of the dataset, the AMPL run, the rollouts, classifiers and estimators.")
    d.DEFINE_string("env", "Hopper-v5", "Gymnasium MuJoCo env.")
    d.DEFINE_string("behaviour", "medium", "make_dataset family of the data (a shipped snapshot).")
    d.DEFINE_integer("dataset_steps", 30_000, "Transitions in the dataset.")
    d.DEFINE_string("hidden", "128,128", "Hidden sizes of the AMPL networks (actor, critic, disc, w, nu).")
    d.DEFINE_string("model_hidden", "128,128,128", "Hidden sizes of each world-model ensemble member.")
    d.DEFINE_integer("model_epochs", 10, "Maximum epochs of the AMPL run's first model fit (early stopping).")
    d.DEFINE_integer("ampl_steps", 8000, "Iterations of the AMPL run that makes the AMPL target policies.")
    d.DEFINE_integer("checkpoint_every", 1000, "Checkpoint period of that run.")
    d.DEFINE_string("policies", DEFAULT_POLICIES, "Target policies: behaviour (the data's snapshot), ampl:STEP, "
                    "snapshot:NAME, mix:A:B:BETA (B with probability BETA each step, else A).")
    d.DEFINE_integer("fqe_steps", 5000, "Critic steps fitting Q of a snapshot policy (TD-DICE's test function).")
    d.DEFINE_integer("miw_steps", 4000, "MIW steps of each estimator (one phased block; VPM: <= T x M).")
    d.DEFINE_integer("miw_batch", 256, "MIW batch of data rows (config.miw.batch_size).")
    d.DEFINE_integer("mu0_batch", 256, "MIW batch of initial states (config.miw.mu0_batch_size).")
    d.DEFINE_string("estimators", DEFAULT_ESTIMATORS, f"Comma-separated, from: {', '.join(VARIANTS)}.")
    d.DEFINE_integer("truth_episodes", 150, "Real-env episodes of each target policy.")
    d.DEFINE_integer("truth_horizon", 0, "Steps per episode (0: where 1 percent of the discounted mass is left).")
    d.DEFINE_string("clf_hidden", "64,64", "Hidden sizes of the ratio classifier.")
    d.DEFINE_integer("clf_epochs", 40, "Epochs of the classifier's cosine schedule (early stopping on the "
                     "held-out fold's loss).")
    d.DEFINE_integer("clf_patience", 10, "Epochs without held-out improvement before it stops.")
    d.DEFINE_float("clf_lr", 3e-3, "Initial AdamW rate of the classifier (cosine decay to 0).")
    d.DEFINE_float("clf_weight_decay", 1e-4, "AdamW weight decay of the classifier.")
    d.DEFINE_integer("clf_folds", 2, "Cross-fitting folds: each data row's w* from a classifier not trained on it.")
