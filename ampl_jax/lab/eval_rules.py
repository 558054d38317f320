"""An AMPL run's saved policies under several action-selection rules: `python -m ampl_jax.lab.eval_rules WORKDIR`.

The paper evaluates the implicit policy by the best of N sampled actions under min(Q1, Q2). When a
run's score collapses, this tells a bad actor from a bad critic: the same checkpoint is evaluated
with that rule, with one sampled action (no critic), and with the actor at zero noise. Each rule
runs the same episodes (same reset seeds); returns are raw and on both score scales.

    python -m ampl_jax.lab.eval_rules runs/diagnose/<dataset>/method=ampl/seed0 --steps=10000,20000
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging

from ampl_jax import checkpoint, methods, results
from ampl_jax.cli import run_cli
from ampl_jax.datagen.source import load_data
from ampl_jax.evaluation import episode_seeds, evaluate
from ampl_jax.methods.ampl.update import make_select_action
from ampl_jax.runtime import eval_keys

RULES = ("best_of_n", "one_sample", "zero_noise")
RECORD = 1_000_000  # every counted step's (s, a, s'): episodes are at most 1,000 steps

FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Only when run as a program: absl flags are global, and other modules define theirs."""
    flags.DEFINE_list("steps", [], "Checkpoint steps (default: every saved step but 0).")
    flags.DEFINE_list("rules", list(RULES), f"Rules among {RULES}.")
    flags.DEFINE_integer("episodes", 10, "Episodes per rule, seed and step.")
    flags.DEFINE_integer("num_action_samples", 0, "N of best_of_n (0: the run's own eval.num_action_samples).")
    flags.DEFINE_string("out_file", "", "Also write the rows as JSON here.")


def make_rule(agent, rule: str) -> Callable:
    """(actor_params, critic_params, key, obs) -> actions, jitted: the training loop's own
    evaluation policy (best of N, or N = 1), or the actor at zero noise."""
    if rule == "best_of_n":
        return make_select_action(agent)
    if rule == "one_sample":
        return make_select_action(agent, n_samples=1)
    if rule == "zero_noise":
        return jax.jit(lambda actor, critic, key, obs: agent.actor.apply(
            actor, obs, jnp.zeros((obs.shape[0], agent.noise_dim)))[0])
    raise ValueError(f"unknown rule {rule!r}: use one of {', '.join(RULES)}")


SATURATED = 0.99  # |a| above this, in an action box of [-1, 1], counts as a saturated component


def action_stats(agent, critic_params, transitions) -> dict[str, float]:
    """What a rule chose at the states it visited: mean |a|, the fraction of saturated components,
    and the critic's min(Q1, Q2) of the chosen actions (a ranking that trusts an extrapolating
    critic picks large, high-Q actions)."""
    obs, act, _ = transitions
    q = jnp.min(agent.critic.apply(critic_params, jnp.asarray(obs, jnp.float32), jnp.asarray(act, jnp.float32)), axis=0)
    act = np.asarray(act)
    return {"action_abs_mean": float(np.abs(act).mean()), "action_saturated": float((np.abs(act) > SATURATED).mean()),
            "q_min_mean": float(q.mean())}


def _seed_slice(tree, i: int, stacked: bool):
    return jax.tree.map(lambda x: jnp.asarray(x[i] if stacked else x), tree)


def read_ampl_config(workdir: str, tool: str) -> ml_collections.ConfigDict:
    """The run's resolved config; ValueError unless it is an AMPL run (the tools read its critic)."""
    with open(os.path.join(workdir, "config.json")) as f:
        config = ml_collections.ConfigDict(json.load(f))
    if config.get("method", "ampl") != "ampl":
        raise ValueError(f"{workdir} is a {config.method!r} run: {tool} reads AMPL checkpoints")
    return config


def load_ampl_run(workdir: str, config: ml_collections.ConfigDict, steps: Sequence[int]):
    """(data, info, agent, steps) of a saved run: the data it trained on, its agent, and the
    checkpoint steps asked for (all saved ones if none), each checked to exist."""
    data, info = load_data(config, progress=False)
    agent = methods.build_agent(config, data, info)
    saved = [s for s in checkpoint.list_steps(workdir) if s > 0]
    steps = [int(s) for s in steps] or saved
    missing = sorted(set(steps) - set(saved))
    if missing:
        raise ValueError(f"no checkpoint at step(s) {missing} in {workdir} (saved: {saved})")
    return data, info, agent, steps


def seed_params(workdir: str, config: ml_collections.ConfigDict, steps: Sequence[int]):
    """Yields (step, seed, actor params, critic params) for every saved step and vmapped seed."""
    stacked = config.num_seeds > 1
    for step in steps:
        _, tree, _ = checkpoint.load_tree(workdir, step)
        for i, seed in enumerate(range(config.seed, config.seed + config.num_seeds)):
            yield step, seed, _seed_slice(tree["actor"], i, stacked), _seed_slice(tree["critic"], i, stacked)


def evaluate_rules(workdir: str, steps: Sequence[int] = (), rules: Sequence[str] = RULES,
                   episodes: int = 10, num_action_samples: int = 0) -> list[dict]:
    """One row per (step, seed, rule): raw return mean/std, both normalised scores and the
    chosen actions' statistics (`action_stats`).

    Every rule of a (step, seed) gets the training loop's evaluation episodes and action keys at
    that step (`evaluation.episode_seeds`, `runtime.eval_keys`): best_of_n with the run's own N and
    episodes replays the score logged at that step, and with N = 1 acts exactly as one_sample.
    """
    config = read_ampl_config(workdir, "eval_rules")
    if num_action_samples > 0:
        config.eval.num_action_samples = int(num_action_samples)
    unknown = sorted(set(rules) - set(RULES))
    if unknown:
        raise ValueError(f"unknown rule(s) {unknown}: use {', '.join(RULES)}")
    _, info, agent, steps = load_ampl_run(workdir, config, steps)
    fns = {r: make_rule(agent, r) for r in rules}
    limit = None if config.eval.max_episode_steps < 0 else int(config.eval.max_episode_steps)
    rows = []
    for step, seed, actor, critic in seed_params(workdir, config, steps):
        key, _ = eval_keys(seed, step)
        for rule, fn in fns.items():
            counter = iter(range(10**9))
            act = lambda obs: np.asarray(fn(actor, critic, jax.random.fold_in(key, next(counter)),
                                            jnp.asarray(obs, jnp.float32)))
            res = evaluate(act, info.env_id, episodes, seed=episode_seeds(seed, step, episodes),
                           max_episode_steps=limit, record=RECORD)
            scores = results.evaluation_scores(res.return_mean, res.return_std, info)
            rows.append({"step": step, "seed": seed, "rule": rule, "mean_length": float(res.lengths.mean()),
                         **scores, **action_stats(agent, critic, res.transitions)})
    return rows


def to_markdown(rows: Sequence[dict]) -> str:
    rules = list(dict.fromkeys(r["rule"] for r in rows))
    lines = ["| step | " + " | ".join(f"{r}: score (dataset) / D4RL / mean length" for r in rules) + " |",
             "|---" * (len(rules) + 1) + "|"]
    for step in sorted({r["step"] for r in rows}):
        cells = []
        for rule in rules:
            rs = [r for r in rows if r["step"] == step and r["rule"] == rule]
            sc = [r["normalized_score"] for r in rs]
            cells.append(f"{np.mean(sc):.1f} ± {np.std(sc, ddof=1) if len(sc) > 1 else float('nan'):.1f} / "
                         f"{np.mean([r['d4rl_normalized_score'] for r in rs]):.1f} / "
                         f"{np.mean([r['mean_length'] for r in rs]):.0f}")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    if len(argv) != 2:
        raise app.UsageError("usage: python -m ampl_jax.lab.eval_rules WORKDIR [--steps=a,b] [--rules=...] [--episodes=10]")
    run_cli(lambda: evaluate_rules(argv[1], FLAGS.steps, FLAGS.rules, FLAGS.episodes, FLAGS.num_action_samples),
            to_markdown, FLAGS.out_file)

if __name__ == "__main__":
    _define_flags()
    app.run(main)
