"""Issue #31, the audit's items off AMPL's default path (N1, N2, N4, N5, N6): each test fails on
the behaviour before the fix. docs/fidelity.md lists them with the authors' lines."""

from __future__ import annotations

import os

import pytest
from absl import flags
from ml_collections import config_flags

from ampl_jax.config import defaults as config_default, validation as configuration
from ampl_jax.methods.ampl.hparams import AMPLHyper
from tests.runs import ROOT as REPO_ROOT

ROOT = str(REPO_ROOT)  # the repository (tests/runs.py)


def _parsed(spec: str, *overrides: str):
    """The config that `--config=spec OVERRIDES` gives, through the entry points' own parser."""
    argv = ["prog", f"--config={spec}", *overrides]
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True, sys_argv=argv)
    fv["config"].parser = configuration._ConfigFileParser()
    fv(argv)
    return fv.config


# --- N4: rollout.real_full_epochs follows the warm start, as the authors' warm_start_epochs + 5 ----


def test_real_full_epochs_is_derived_from_the_warm_start_unless_set():
    c = config_default.get_config()
    assert (c.agent.warm_start_epochs, c.rollout.real_full_epochs) == (40, 45)
    c.agent.warm_start_epochs = 20
    assert c.rollout.real_full_epochs == 25  # was 45: the schedule desynchronised
    assert AMPLHyper.from_config(c).rollout.real_full_epochs == 25
    assert configuration.to_dict(c)["rollout"]["real_full_epochs"] == 25  # config.json holds the value
    c.rollout.real_full_epochs = 30  # an explicit value wins over the derivation
    c.agent.warm_start_epochs = 10
    assert c.rollout.real_full_epochs == 30


def test_real_full_epochs_follows_a_warm_start_override_on_the_command_line():
    c = _parsed(os.path.join(ROOT, "configs", "hopper.py"), "--config.agent.warm_start_epochs=30")
    assert (c.agent.warm_start_epochs, c.rollout.real_full_epochs) == (30, 35)
    c = _parsed(os.path.join(ROOT, "configs", "hopper.py"), "--config.agent.warm_start_epochs=30",
                "--config.rollout.real_full_epochs=50")
    assert c.rollout.real_full_epochs == 50
    # configs that set their own schedule keep it (the 20k protocol: warm start 8, real data to 10)
    c = _parsed(os.path.join(ROOT, "configs", "benchmark.py") + ":hopper-medium_expert",
                "--config.agent.warm_start_epochs=6")
    assert c.rollout.real_full_epochs == 10
    c = _parsed(os.path.join(ROOT, "configs", "benchmark.py") + ":hopper-medium_expert-long")
    assert (c.agent.warm_start_epochs, c.rollout.real_full_epochs) == (40, 45)


# --- N1: the estimator ablations clip w's output, as the authors' README runs them ------------------


@pytest.mark.parametrize("estimator,clipped", [("td_dice", False), ("td_dice_multi", False), ("vpm", True),
                                               ("gendice", True), ("dualdice", True)])
def test_ablation_estimators_clip_w_as_the_authors_readme(estimator, clipped):
    from ampl_jax.methods.ampl import miw as miw_lib
    from ampl_jax.methods.ampl import networks as ampl_nets

    c = config_default.get_config()
    c.miw.estimator = estimator
    configuration.validate(c)
    net = miw_lib.make_miw_net(c.miw, (8, 8), 0.01)
    assert isinstance(net, miw_lib.ClippedMIWNet if clipped else ampl_nets.MIWNet)  # before: MIWNet for all
    assert AMPLHyper.from_config(c).miw.settings.output_clipping is clipped
    if clipped:  # each ablation's own switch turns it off
        c.miw[estimator].output_clipping = False
        assert isinstance(miw_lib.make_miw_net(c.miw, (8, 8), 0.01), ampl_nets.MIWNet)
    else:  # TD-DICE keeps the top-level switch
        c.miw.output_clipping = True
        assert isinstance(miw_lib.make_miw_net(c.miw, (8, 8), 0.01), miw_lib.ClippedMIWNet)


def test_runs_saved_before_the_clipping_resume_unless_their_estimator_changed():
    """An AMPL run saved before the new keys resumes; a VPM run that ran unclipped is refused (its
    w would change), one that ran with --config.miw.output_clipping=True resumes."""
    new = configuration.to_dict(config_default.get_config())
    old = configuration.to_dict(config_default.get_config())
    for est in ("vpm", "gendice", "dualdice"):
        del old["miw"][est]["output_clipping"]
    assert configuration.differences(old, new) == []
    for est in ("vpm", "gendice", "dualdice"):
        saved = {**old, "miw": {**old["miw"], "estimator": est}}
        now = {**new, "miw": {**new["miw"], "estimator": est}}
        assert configuration.differences(saved, now) == [f"miw.{est}.output_clipping: False -> True"]
        saved["miw"] = {**saved["miw"], "output_clipping": True}
        now["miw"] = {**now["miw"], "output_clipping": True}
        assert configuration.differences(saved, now) == []


# --- N2: the Gaussian-policy ablation clamps its log std into [-20, 2], as the authors' -------------


def test_gaussian_policy_clamps_log_std_into_the_authors_bounds():
    import jax
    import jax.numpy as jnp
    import numpy as np

    from ampl_jax import networks
    from tests.methods.ampl.test_ablations import _setup

    _, agent, data, state = _setup(agent__policy="tanh_gaussian")
    assert isinstance(agent.actor, networks.TanhGaussianActor)
    obs = data.observations[:16]
    # the last layer's log-std half set to a constant c: the log std is c inside [-20, 2], clamped outside
    params = jax.tree.map(jnp.copy, state.actor)
    last = sorted(params["params"]["MLP_0"])[-1]
    layer = params["params"]["MLP_0"][last]
    act_dim = agent.act_dim
    for c, want in ((-10.0, -10.0), (-30.0, -20.0), (1.0, 1.0), (5.0, 2.0)):
        layer["kernel"] = layer["kernel"].at[:, act_dim:].set(0.0)
        layer["bias"] = layer["bias"].at[act_dim:].set(c)
        _, log_std = agent.actor.apply(params, obs, method="distribution")
        # before: squashed by tanh into [-5, 2] (-10 read about -5)
        np.testing.assert_allclose(np.asarray(log_std), want)
    # the default head (the behaviour SAC's) keeps the smooth squash
    _, ls = networks.gaussian_head(jnp.asarray([[0.0, -10.0]]))
    assert float(ls[0, 0]) > networks.LOG_STD_MIN - 1e-6 and float(ls[0, 0]) < -4.9


def test_gaussian_bounds_are_checked_and_old_gaussian_runs_refused():
    c = config_default.get_config()
    c.agent.gaussian_log_std_bounds = (2.0, -20.0)
    with pytest.raises(configuration.ConfigError, match="gaussian_log_std_bounds"):
        configuration.validate(c)
    new = configuration.to_dict(config_default.get_config())
    old = configuration.to_dict(config_default.get_config())
    del old["agent"]["gaussian_log_std_bounds"]
    assert configuration.differences(old, new) == []
    old["agent"]["policy"] = new["agent"]["policy"] = "tanh_gaussian"
    assert [d.split(":")[0] for d in configuration.differences(old, new)] == ["agent.gaussian_log_std_bounds"]


# --- N6: the reward test function and td_dice_multi draw independent keys ---------------------------


def _split_family(key):
    """Every key _miw_batches derives from `key` (split(key, 4)) and each of those split in 3."""
    import jax

    subs = list(jax.random.split(key, 4))
    return {tuple(int(x) for x in k) for k in subs + [kk for s in subs for kk in jax.random.split(s, 3)]}


@pytest.mark.parametrize("variant", ["reward", "td_dice_multi"])
def test_miw_step_keys_never_reuse_the_batch_keys(monkeypatch, variant):
    """fold_in(key, i) equals split(key, n)[i] in this JAX: the reward samples used to draw from the
    key of the mu0 indices, td_dice_multi's test functions from the key of the actor's noise at s0."""
    import jax
    import numpy as np

    from ampl_jax.methods.ampl import miw as miw_lib
    from ampl_jax.methods.ampl import miw_step as miw_step_lib
    from tests.methods.ampl.test_ablations import _setup

    k = jax.random.PRNGKey(7)
    assert (jax.random.fold_in(k, 2) == jax.random.split(k, 4)[2]).all()  # the collision, as measured
    over = {"miw__test_function": "reward"} if variant == "reward" else {"miw__estimator": "td_dice_multi"}
    _, agent, data, state = _setup(**over)
    seen = {"batches": [], "other": []}
    batches, reward, features = (miw_step_lib._miw_batches, miw_step_lib.model_reward_sample,
                                 miw_lib.random_test_functions)

    def record(name, key):  # the key's value inside the compiled step (one compile, not op by op)
        jax.debug.callback(lambda k: seen[name].append(np.asarray(k)), key)

    def spy_batches(agent, state, data, key):
        record("batches", key)
        return batches(agent, state, data, key)

    def spy_reward(agent, model, key, obs, act):
        record("other", key)
        return reward(agent, model, key, obs, act)

    def spy_features(key, *a, **kw):
        record("other", key)
        return features(key, *a, **kw)

    monkeypatch.setattr(miw_step_lib, "_miw_batches", spy_batches)
    monkeypatch.setattr(miw_step_lib, "model_reward_sample", spy_reward)
    monkeypatch.setattr(miw_lib, "random_test_functions", spy_features)
    jax.block_until_ready(jax.jit(lambda s, k: miw_step_lib.miw_step(agent, s, data, k))(state, jax.random.PRNGKey(3)))
    assert len(seen["batches"]) == 1 and len(seen["other"]) == (3 if variant == "reward" else 1)
    family = _split_family(seen["batches"][0])
    for key in seen["other"]:
        assert tuple(int(x) for x in key) not in family  # before: each one was in it


# --- item 3: td_dice_multi tests the constant f_0 = 1 and pulls E_b[w] to the mass it implies -------


def test_td_dice_multi_step_tests_the_constant_and_the_mass(monkeypatch):
    import jax
    import numpy as np

    from ampl_jax.methods.ampl import miw as miw_lib
    from ampl_jax.methods.ampl import miw_step as miw_step_lib
    from tests.methods.ampl.test_ablations import _setup

    _, agent, data, state = _setup(miw__estimator="td_dice_multi")
    e = agent.hp.miw.td_dice_multi
    assert e.constant and e.mass_penalty == 0.1
    seen = {}
    loss = miw_lib.td_dice_multi_loss

    def spy(w, f, f0_pi, f_next_pi, *args, **kw):  # the arrays' values inside the compiled step
        seen.update(kw=kw)
        jax.debug.callback(lambda *x: seen.update(zip(("f", "f0", "f1"), map(np.asarray, x))), f, f0_pi, f_next_pi)
        return loss(w, f, f0_pi, f_next_pi, *args, **kw)

    monkeypatch.setattr(miw_lib, "td_dice_multi_loss", spy)
    _, metrics = jax.block_until_ready(
        jax.jit(lambda s, k: miw_step_lib.miw_step(agent, s, data, k))(state, jax.random.PRNGKey(3)))
    for name in ("f", "f0", "f1"):  # K random functions and the constant first (before: K only)
        assert seen[name].shape[-1] == e.num_functions + 1
        np.testing.assert_array_equal(np.asarray(seen[name][:, 0]), 1.0)
    assert seen["kw"]["mass_penalty"] == 0.1 and "miw_mass_gap" in metrics
    # the gap: E_b[w] minus (1 - g) E_b[w] / (E_b[w] - g E_b[(1 - d) w]); 0 at the ratio's mass
    w, d, g = jax.numpy.asarray([1.0, 2.0, 3.0]), jax.numpy.asarray([0.0, 0.0, 1.0]), 0.9
    mass = (1 - g) * 2.0 / (2.0 - g * 1.0)
    np.testing.assert_allclose(float(miw_lib.mass_gap(w, d, g)), 2.0 - mass, rtol=1e-6)
    np.testing.assert_allclose(float(miw_lib.mass_gap(jax.numpy.ones(4), jax.numpy.zeros(4), g)), 0.0, atol=1e-6)


# --- N5: the KL-dual policy regulariser (the authors' --use_kl_dual, with and without weights) -------


def test_kl_dual_needs_wpr_and_its_losses_are_the_authors():
    import jax.numpy as jnp
    import numpy as np

    from ampl_jax.methods.ampl import discriminator as disc_lib

    c = config_default.get_config()
    c.agent.regularizer = "kl_dual"  # before: not a choice
    with pytest.raises(configuration.ConfigError, match="weighted_regularizer=True"):
        configuration.validate(c)
    c.agent.weighted_regularizer = True
    configuration.validate(c)
    # by hand: real = mean(D(true) w), fake = mean(-D(fake) w) over the live rows (count), loss -(real + fake)
    t, f = jnp.asarray([1.0, 2.0, 3.0]), jnp.asarray([0.5, -1.0, 4.0])
    w = jnp.asarray([2.0, 0.0, 1.0])  # the middle row is dead
    loss, m = disc_lib.kl_dual_discriminator_loss(t, f, w, w, jnp.asarray(2.0))
    np.testing.assert_allclose(float(loss), -((2 * 1 + 3) / 2 - (2 * 0.5 + 4) / 2))
    np.testing.assert_allclose(float(disc_lib.kl_dual_generator_loss(f, w, jnp.asarray(2.0))), -(2 * 0.5 + 4) / 2)


@pytest.mark.parametrize("weighted", [True, False])
def test_kl_dual_step_trains_disc_and_actor_on_wpr_pairs(weighted):
    import jax
    import numpy as np

    from ampl_jax.methods.ampl import update as update_lib
    from tests.methods.ampl.test_ablations import _equal, _setup

    _, agent, data, state = _setup(agent__regularizer="kl_dual", agent__weighted_regularizer=True,
                                   agent__kl_dual_weighted=weighted, agent__warm_start_epochs=0)
    pairs = update_lib._wpr_pairs(agent, state, data, jax.random.PRNGKey(1))
    fake_w, true_w = update_lib._kl_dual_weights(agent, pairs)
    if weighted:
        assert fake_w is pairs.fake_w and true_w is pairs.true_w
    else:  # every live row counts 1, whatever its weight
        np.testing.assert_array_equal(np.asarray(fake_w), np.asarray(pairs.live))
    before = jax.device_get(state)
    new, metrics = jax.device_get(jax.jit(lambda s: update_lib.iteration(agent, s, data, jax.random.PRNGKey(2),
                                                                         with_actor=True))(state))
    assert all(np.isfinite(v) for v in metrics.values())
    assert not _equal(new.disc, before.disc) and not _equal(new.actor, before.actor)
    # the discriminator's step is the KL-dual one (not the cross-entropy's), on the pre-step D
    from ampl_jax.methods.ampl import discriminator as disc_lib

    _, m = update_lib._disc_step(agent, state, pairs, jax.random.PRNGKey(0))
    tv = agent.disc.apply(state.disc, pairs.true_obs, pairs.true_raw)
    fv = agent.disc.apply(state.disc, pairs.fake_obs, pairs.fake_raw)
    expected, _ = disc_lib.kl_dual_discriminator_loss(tv, fv, true_w, fake_w, pairs.count)
    np.testing.assert_allclose(float(m["disc_loss"]), float(expected), rtol=1e-5, atol=1e-6)
