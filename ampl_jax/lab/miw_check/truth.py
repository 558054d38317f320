"""The ground truth w*(s, a) = d_pi(s, a) / d_D(s, a) of a fixed policy on the dataset rows.

pi is rolled out in the real environment (`occupancy`), and a cross-fitted classifier between its
discounted occupancy samples and the data rows gives the ratio (`classifier`). Two such fits
(other folds, other seeds) are averaged into w*; how well they agree with each other is the
ceiling of what any estimator can be shown to reach against this truth.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ampl_jax.lab.miw_check import classifier, correlation, occupancy

FIT_KEYS = ("holdout_log_loss", "holdout_accuracy", "holdout_ece", "train_log_loss", "mean_ratio_on_data")


def make_policy_fn(agent: Any, actor_params: Any, key: jax.Array) -> occupancy.PolicyFn:
    """(call index, obs) -> a ~ pi(s, eps): the actor AMPL's MIW step samples, fresh noise per call."""
    act = jax.jit(lambda p, k, obs: agent.act(p, k, obs)[0])
    return lambda call, obs: np.asarray(act(actor_params, jax.random.fold_in(key, call),
                                            jnp.asarray(obs, jnp.float32)))


def ground_truth(agent: Any, actor_params: Any, data: Any, env_fn: Callable[[], Any], opts: dict[str, Any],
                 key: jax.Array) -> tuple[np.ndarray, dict[str, Any]]:
    """w* on every data row for the actor `actor_params` of `agent`, and what the report shows of it:
    the rollouts, the classifier's held-out quality, w*'s spread and the two fits' agreement.

    opts: truth_episodes, truth_horizon (0: `occupancy.default_horizon`), seed, clf_folds,
    clf_hidden, clf_lr, clf_weight_decay, clf_epochs, clf_patience (the command's options).
    """
    gamma = float(agent.hp.agent.gamma)
    horizon = opts["truth_horizon"] or occupancy.default_horizon(gamma)
    k_roll, k_clf = jax.random.split(key)
    occ = occupancy.occupancy_samples(env_fn, make_policy_fn(agent, actor_params, k_roll), opts["truth_episodes"],
                                      gamma, horizon, seed=opts["seed"] + 20_000)
    x_d = np.concatenate([np.asarray(data.observations), np.asarray(data.actions)], -1)
    x_pi = np.concatenate([occ.observations, occ.actions], -1)
    fits = [classifier.cross_fit_ratio(
        jax.random.fold_in(k_clf, i), x_pi, occ.weights, x_d, groups_pi=occ.episode, folds=opts["clf_folds"],
        hidden=opts["clf_hidden"], lr=opts["clf_lr"], weight_decay=opts["clf_weight_decay"],
        max_epochs=opts["clf_epochs"], patience=opts["clf_patience"], mass=occ.mass) for i in range(2)]
    w_true = 0.5 * (fits[0][0] + fits[1][0])
    info = {k: float(np.mean([f[1][k] for f in fits])) for k in FIT_KEYS}
    info.update(chance_log_loss=float(np.log(2.0)), fits=[f[1] for f in fits])
    return w_true, {"rollouts": occ.summary(), "classifier": info, "w_true": correlation.distribution(w_true),
                    "self_agreement": correlation.compare(fits[0][0], fits[1][0])}
