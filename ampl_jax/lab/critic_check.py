"""Does the critic rank the actor's own samples by their value? `python -m ampl_jax.lab.critic_check WORKDIR`.

The paper evaluates AMPL's implicit policy by the best of N sampled actions under min(Q1, Q2), which
is only as good as the critic's ranking of those N actions at one state. This measures that ranking
against the simulator: from S dataset states (the MuJoCo state set to each), each of N sampled
actions is taken once and the actor's own sample followed after it; the discounted return of the
rescaled rewards the critic learns (r~), averaged over R repeats and truncated at H steps, is that
action's Monte Carlo value. Per state: the Spearman rank correlation between min Q and that value,
and what the critic's choice returns against the samples' mean and best.

    python -m ampl_jax.lab.critic_check runs/diagnose/<dataset>/method=ampl/seed0 --steps=20000 \
        [--states_from=data|best_of_n|one_sample]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from scipy import stats as scipy_stats

from ampl_jax.data import preprocess
from ampl_jax.cli import markdown_table, run_cli
from ampl_jax.lab.eval_rules import load_ampl_run, read_ampl_config, seed_params
from ampl_jax.evaluation import episode_seeds, evaluate
from ampl_jax.methods.ampl.update import make_select_action
from ampl_jax.runtime import eval_keys

FLAGS = flags.FLAGS
STATE_SOURCES = ("data", "best_of_n", "one_sample")


def _define_flags() -> None:
    """Only when run as a program: absl flags are global, and other modules define theirs."""
    flags.DEFINE_list("steps", [], "Checkpoint steps (default: every saved step but 0).")
    flags.DEFINE_integer("states", 20, "Dataset states per seed.")
    flags.DEFINE_integer("samples", 0, "Actions sampled per state (0: the run's eval.num_action_samples).")
    flags.DEFINE_integer("repeats", 2, "Rollouts per (state, action): the actor's later samples differ.")
    flags.DEFINE_integer("horizon", 300, "Steps per rollout (the discounted tail beyond it is dropped).")
    flags.DEFINE_enum("states_from", "data", list(STATE_SOURCES), "Where the states come from: the dataset, or "
                      "the evaluation episodes of the paper's rule (best_of_n) or of the actor's own sample.")
    flags.DEFINE_string("out_file", "", "Also write the rows as JSON here.")


def set_state(env: gymnasium.Env, obs: np.ndarray) -> None:
    """Put a reset MuJoCo locomotion env in the state whose observation is `obs` (the x position,
    which the observation leaves out, is 0; the envs' rewards do not depend on it)."""
    u = env.unwrapped
    nq, nv = u.model.nq, u.model.nv
    if obs.shape[-1] != nq - 1 + nv:
        raise ValueError(f"observation of size {obs.shape[-1]} is not qpos[1:] + qvel ({nq - 1} + {nv}) of "
                         f"{env.spec.id if env.spec else 'this env'}: critic_check needs a MuJoCo locomotion env")
    u.set_state(np.concatenate([[0.0], obs[: nq - 1]]), obs[nq - 1:])


def mc_values(policy: Callable[[np.ndarray], np.ndarray], env_id: str, states: np.ndarray, first: np.ndarray,
              horizon: int, gamma: float, reward_fn: Callable[[float], float]) -> np.ndarray:
    """Discounted return of reward_fn(r) from each states[i] after first[i], then `policy`, for at
    most `horizon` steps (termination ends it). One env per row; `policy` maps [n, obs] -> [n, act]."""
    n = states.shape[0]
    envs = [gymnasium.make(env_id) for _ in range(n)]
    try:
        obs = np.zeros_like(states)
        for i, env in enumerate(envs):
            env.reset(seed=i)
            set_state(env, states[i].astype(np.float64))
            obs[i] = env.unwrapped._get_obs()
        values, alive, discount = np.zeros(n), np.ones(n, bool), 1.0
        act = first
        for t in range(horizon):
            if t > 0:
                act = policy(obs)  # every row, dead ones too: a fixed shape keeps the policy compiled
            for i in np.flatnonzero(alive):
                obs[i], r, terminated, truncated, _ = envs[i].step(np.asarray(act[i], np.float64))
                values[i] += discount * reward_fn(r)
                alive[i] = not (terminated or truncated)
            discount *= gamma
            if not alive.any():
                break
        return values
    finally:
        for env in envs:
            env.close()


def check_ranking(workdir: str, steps: Sequence[int] = (), num_states: int = 20, samples: int = 0,
                  repeats: int = 2, horizon: int = 300, states_from: str = "data") -> list[dict]:
    """One row per (step, seed): the critic's ranking of N sampled actions against their Monte
    Carlo values, over `num_states` states of the dataset or of a rule's evaluation episodes
    (`states_from`: where the critic was trained, or where the policy actually goes)."""
    if states_from not in STATE_SOURCES:
        raise ValueError(f"unknown states_from {states_from!r}: use one of {', '.join(STATE_SOURCES)}")
    config = read_ampl_config(workdir, "critic_check")
    n = int(samples) or int(config.eval.num_action_samples)
    if n < 2 or num_states < 1 or repeats < 1 or horizon < 1:
        raise ValueError(f"need samples >= 2, states, repeats and horizon >= 1 (got {n}, {num_states}, {repeats}, {horizon})")
    data, info, agent, steps = load_ampl_run(workdir, config, steps)
    r_min, r_max = float(np.min(data.rewards)), float(np.max(data.rewards))
    span = r_max - r_min if r_max > r_min else 1.0
    reward_fn = lambda r: (r - r_min + preprocess.REWARD_OFFSET) / span  # noqa: E731  (the data's r~)
    gamma = float(config.agent.gamma)
    act = jax.jit(lambda actor, key, obs: agent.act(actor, key, obs)[0])
    q_min = jax.jit(lambda critic, obs, a: jnp.min(agent.critic.apply(critic, obs, a), axis=0))
    observations = np.asarray(data.observations)
    rows = []
    for step, seed, actor, critic in seed_params(workdir, config, steps):
        rng = np.random.default_rng(seed + step)
        key = jax.random.fold_in(jax.random.PRNGKey(seed), step)
        pool = observations if states_from == "data" else _visited(
            agent, actor, critic, n if states_from == "best_of_n" else 1, info.env_id, seed, step)
        states = pool[rng.choice(pool.shape[0], num_states, replace=pool.shape[0] < num_states)]
        rep = jnp.asarray(np.repeat(states, n, axis=0))  # [S*N, obs]: state s's samples together
        actions = act(actor, jax.random.fold_in(key, 0), rep)
        q = np.asarray(q_min(critic, rep, actions)).reshape(num_states, n)
        calls = iter(range(1, 10**9))
        policy = lambda obs: np.asarray(act(actor, jax.random.fold_in(key, next(calls)),  # noqa: E731
                                            jnp.asarray(obs, jnp.float32)))
        g = mc_values(policy, info.env_id, np.repeat(np.asarray(rep), repeats, axis=0),
                      np.repeat(np.asarray(actions), repeats, axis=0), horizon, gamma, reward_fn)
        g = g.reshape(num_states, n, repeats).mean(-1)
        rho = np.array([scipy_stats.spearmanr(q[s], g[s]).statistic for s in range(num_states)])
        chosen = g[np.arange(num_states), q.argmax(1)]
        rows.append({"step": step, "seed": seed, "states_from": states_from, "states": num_states, "samples": n, "repeats": repeats,
                     "horizon": horizon, "spearman_mean": float(np.nanmean(rho)),
                     "spearman_negative_fraction": float(np.mean(rho[np.isfinite(rho)] < 0)),
                     "value_chosen": float(chosen.mean()), "value_mean": float(g.mean()),
                     "value_best": float(g.max(1).mean()), "value_worst": float(g.min(1).mean()),
                     "q_chosen": float(q.max(1).mean()), "q_mean": float(q.mean())})
    return rows


def _visited(agent, actor, critic, n: int, env_id: str, seed: int, step: int, episodes: int = 5) -> np.ndarray:
    """The states of `episodes` evaluation episodes acted by the best of n samples by min Q (n = 1:
    the actor's own sample), with the training loop's evaluation episodes and keys at `step`."""
    select = make_select_action(agent, n_samples=n)
    key, _ = eval_keys(seed, step)
    calls = iter(range(10**9))
    res = evaluate(lambda obs: np.asarray(select(actor, critic, jax.random.fold_in(key, next(calls)),
                                                 jnp.asarray(obs, jnp.float32))),
                   env_id, episodes, seed=episode_seeds(seed, step, episodes), record=10**6)
    return np.asarray(res.transitions[0])


def to_markdown(rows: Sequence[dict]) -> str:
    header = ["step", "seed", "Spearman(Q, MC value), mean over states", "states with rho < 0",
              "MC value: Q's choice / samples' mean / best / worst", "Q: choice / mean"]
    return markdown_table(header, [
        [r["step"], r["seed"], f"{r['spearman_mean']:+.2f}", f"{r['spearman_negative_fraction']:.2f}",
         f"{r['value_chosen']:.2f} / {r['value_mean']:.2f} / {r['value_best']:.2f} / {r['value_worst']:.2f}",
         f"{r['q_chosen']:.2f} / {r['q_mean']:.2f}"] for r in rows])


def main(argv: list[str]) -> None:
    logging.set_verbosity(logging.WARNING)
    if len(argv) != 2:
        raise app.UsageError("usage: python -m ampl_jax.lab.critic_check WORKDIR [--steps=a,b] [--states=20] [--samples=N]")
    run_cli(lambda: check_ranking(argv[1], FLAGS.steps, FLAGS.states, FLAGS.samples, FLAGS.repeats, FLAGS.horizon,
                                  FLAGS.states_from), to_markdown, FLAGS.out_file)

if __name__ == "__main__":
    _define_flags()
    app.run(main)
