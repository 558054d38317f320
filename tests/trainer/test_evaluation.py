"""evaluate() must report exactly the first episode of each seeded sub-env."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

from ampl_jax.evaluation import EvalResult, check_env_matches, evaluate

ENV = "Hopper-v5"


def _constant_policy(value: float):
    def act(obs: np.ndarray) -> np.ndarray:
        return np.full((obs.shape[0], 3), value, dtype=np.float32)

    return act


def _linear_policy(obs: np.ndarray) -> np.ndarray:
    """Deterministic state feedback, so that episodes of different seeds end at different times."""
    w = np.linspace(-1.0, 1.0, obs.shape[1] * 3, dtype=np.float32).reshape(obs.shape[1], 3)
    # elementwise products summed per row, not a matmul: BLAS may round a 1-row and a 3-row
    # product differently on some CPUs, and the test compares batched with one-at-a-time calls
    return np.tanh((obs[:, :, None] * w[None]).sum(axis=1))


def _manual(policy, seed: int, n: int, max_episode_steps: int | None):
    """The same episodes, one env at a time with gymnasium.make."""
    returns, lengths = [], []
    for i in range(n):
        kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
        env = gymnasium.make(ENV, **kwargs)
        obs, _ = env.reset(seed=seed + i)
        total, steps, done = 0.0, 0, False
        while not done:
            action = policy(np.asarray(obs, dtype=np.float32)[None])[0]
            obs, r, term, trunc, _ = env.step(action.astype(env.action_space.dtype))
            total += r
            steps += 1
            done = term or trunc
        env.close()
        returns.append(total)
        lengths.append(steps)
    return np.array(returns), np.array(lengths)


@pytest.mark.parametrize(
    "policy,max_steps",
    [(_constant_policy(0.3), None), (_linear_policy, None), (_constant_policy(-0.2), 50)],
)
def test_matches_manual_rollouts_bit_for_bit(policy, max_steps):
    res = evaluate(policy, ENV, num_episodes=3, seed=7, max_episode_steps=max_steps)
    ref_returns, ref_lengths = _manual(policy, 7, 3, max_steps)
    assert isinstance(res, EvalResult)
    np.testing.assert_array_equal(res.returns, ref_returns)
    np.testing.assert_array_equal(res.lengths, ref_lengths)
    assert np.all(res.lengths <= (1000 if max_steps is None else max_steps))
    assert res.return_mean == pytest.approx(ref_returns.mean())
    assert res.return_std == pytest.approx(ref_returns.std())


def test_episodes_of_different_lengths_are_masked():
    """Sub-envs that finish early stop counting while the others run on."""
    res = evaluate(_constant_policy(0.3), ENV, num_episodes=3, seed=7)
    assert len(set(res.lengths.tolist())) > 1
    np.testing.assert_array_equal(res.returns, _manual(_constant_policy(0.3), 7, 3, None)[0])


def test_config_minus_one_means_env_limit():
    a = evaluate(_constant_policy(0.3), ENV, 2, seed=0, max_episode_steps=-1)
    b = evaluate(_constant_policy(0.3), ENV, 2, seed=0)
    np.testing.assert_array_equal(a.returns, b.returns)


def test_wrong_action_shape_raises():
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        evaluate(lambda o: np.zeros((o.shape[0], 2)), ENV, 2, seed=0, max_episode_steps=5)


def test_check_env_matches():
    check_env_matches(ENV, 11, 3)
    with pytest.raises(ValueError, match="obs_dim=17"):
        check_env_matches(ENV, 17, 3)
    with pytest.raises(ValueError, match="act_dim=6"):
        check_env_matches(ENV, 11, 6)


def test_record_keeps_the_counted_episodes_real_transitions():
    res = evaluate(_linear_policy, ENV, num_episodes=3, seed=7, record=100_000)
    obs, act, nxt = res.transitions
    # every non-final step of the three counted episodes, none of the ignored later ones
    assert len(obs) == len(act) == len(nxt) == int(res.lengths.sum()) - 3
    np.testing.assert_allclose(act, _linear_policy(obs), rtol=1e-6)
    assert evaluate(_linear_policy, ENV, num_episodes=3, seed=7, record=10).transitions[0].shape[0] == 10
    assert evaluate(_linear_policy, ENV, num_episodes=1, seed=7).transitions is None


def test_episode_seeds_are_distinct_across_seeds_steps_and_episodes():
    """Issue #31 N8: `seed + 10_000 + step + i` gave vmapped seeds s and s + 1 nine of their ten
    episodes in common; the hashed seeds share none, across seeds, steps and episodes."""
    from ampl_jax.evaluation import episode_seeds

    drawn = [tuple(episode_seeds(seed, step, 10)) for seed in range(4) for step in (2_000, 4_000, 200_000)]
    flat = [s for group in drawn for s in group]
    assert len(set(flat)) == len(flat)
    assert episode_seeds(3, 4_000, 10) == episode_seeds(3, 4_000, 10)  # a pure function of (seed, step)
    assert episode_seeds(3, 4_000, 4) == episode_seeds(3, 4_000, 10)[:4]


def test_evaluation_keys_never_reuse_an_action_key_for_the_diagnostics():
    """Issue #31 N8: the diagnostics' key was fold_in(key, 1), the second action call's key."""
    import jax

    from ampl_jax.runtime import eval_keys

    act, diag = eval_keys(0, 2_000)
    action_keys = {tuple(np.asarray(jax.random.key_data(jax.random.fold_in(act, t))).tolist()) for t in range(1_000)}
    assert tuple(np.asarray(jax.random.key_data(diag)).tolist()) not in action_keys
    assert tuple(np.asarray(jax.random.key_data(act)).tolist()) not in action_keys
    other, _ = eval_keys(1, 2_000)
    assert not np.array_equal(jax.random.key_data(other), jax.random.key_data(act))


def test_evaluate_takes_explicit_reset_seeds():
    """A list of seeds resets sub-env i with seeds[i]: the same episodes as the int form's seed + i."""
    by_int = evaluate(_linear_policy, ENV, 3, seed=7, max_episode_steps=30)
    by_list = evaluate(_linear_policy, ENV, 3, seed=[7, 8, 9], max_episode_steps=30)
    np.testing.assert_array_equal(by_int.returns, by_list.returns)
    with pytest.raises(ValueError, match="2 reset seeds for 3 episodes"):
        evaluate(_linear_policy, ENV, 3, seed=[1, 2], max_episode_steps=30)
