"""Quick start: a whole AMPL run on a 2-core CPU in a few minutes, fully offline.

Creates a small local Hopper-v5 dataset on first use (20k steps of the shipped "medium" SAC
policy in the real MuJoCo environment), fits
the paper's 7-member ensemble with a short early-stopping budget, and trains smaller networks
for 20k iterations with every component of AMPL switched on (model rollouts from the
start, MIW interleaved, a w-weighted refit, the Q term after a short warm start). It shows the
machinery end to end; its score is not a paper number.
"""

from configs import default


def get_config():
    c = default.get_config()
    c.dataset.id = "ampl/hopper/medium-small-v0"
    c.dataset.create_if_missing = True
    c.dataset.create_env = "Hopper-v5"
    c.dataset.create_policy = "medium"
    c.dataset.create_steps = 20_000

    c.model.hidden_dims = (200, 200, 200, 200)
    c.model.epoch_steps = 200
    c.model.patience = 3
    c.model.max_epochs = 15
    c.model.refit_max_epochs = 5

    c.rollout.horizon = 1
    c.rollout.transitions_per_rollout = 4096
    c.rollout.buffer_capacity = 100_000
    c.rollout.period = 250

    c.agent.hidden_dims = (256, 256)
    c.agent.batch_size = 256
    c.miw.batch_size = 256
    c.miw.mu0_batch_size = 256

    # Schedules in epochs of 500 iterations: the Q term joins after 8 epochs (4k iterations), the
    # real-data fraction starts falling after 10 and reaches 0.5 at epoch 19, and the model is
    # refitted with w every 20 epochs (once, at 10k).
    c.train.total_steps = 20_000
    c.train.epoch_length = 500
    c.rollout.real_full_epochs = 10
    c.rollout.real_decay_every = 2
    c.agent.warm_start_epochs = 8
    c.train.model_retrain_epochs = 20
    c.train.eval_every = 2_000
    c.eval.episodes = 5
    return c
