"""Quick start: a whole AMPL run on a 2-core CPU in a few minutes, fully offline.

Creates a small local Hopper-v5 dataset on first use (20k steps of the shipped "medium" SAC
policy in the real MuJoCo environment), fits
the paper's 7-member ensemble with a short early-stopping budget, and trains smaller networks
for 20k iterations with every component of AMPL switched on (model rollouts from the
start, MIW interleaved, a w-weighted refit, the Q term after a short warm start). It shows the
machinery end to end; its score is not a paper number.
"""

from ampl_jax.config import defaults as default


def get_config():
    c = default.get_config()
    c.dataset.id = default.local_dataset_id("hopper", "medium-small")
    c.dataset.create_if_missing = True
    c.dataset.create_env = "Hopper-v5"
    c.dataset.create_policy = "medium"
    c.dataset.create_steps = 20_000
    return default.cpu_budget(c)
