"""Data layer: Minari datasets -> OfflineData, preprocessing, reference scores, dataset creation.

`make_dataset` is not re-exported here so that `python -m ampl_jax.data.make_dataset` runs cleanly;
import it as `from ampl_jax.data.make_dataset import make_dataset`.
"""

from ampl_jax.data.load import DatasetError, check_dataset_id, dataset_path, load_dataset
from ampl_jax.data.policies import PolicyError, make_policy
from ampl_jax.data.preprocess import (
    normalized_score,
    obs_range,
    rescale_rewards,
    reward_bound,
    unscale_rewards,
)
from ampl_jax.data.scores import reference_scores

__all__ = [
    "DatasetError",
    "PolicyError",
    "check_dataset_id",
    "dataset_path",
    "load_dataset",
    "make_policy",
    "normalized_score",
    "obs_range",
    "reference_scores",
    "rescale_rewards",
    "reward_bound",
    "unscale_rewards",
]
