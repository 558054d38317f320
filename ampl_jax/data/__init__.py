"""Data layer: Minari datasets -> OfflineData, preprocessing, reference scores.

Reading only: making a dataset (behaviour policies, the SAC trainer, `make_dataset`) lives in
`ampl_jax.datagen`, which builds on this layer; `ampl_jax.datagen.source.load_data` is the one door
through which a run reads its data and makes it when it is missing.
"""

from ampl_jax.data.load import DatasetError, check_dataset_id, dataset_path, load_dataset
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
    "check_dataset_id",
    "dataset_path",
    "load_dataset",
    "normalized_score",
    "obs_range",
    "reference_scores",
    "rescale_rewards",
    "reward_bound",
    "unscale_rewards",
]
