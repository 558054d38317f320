"""What a run reports: an evaluation's scores on both scales, and the summary at its end.

Two scales, never mixed: the dataset's own (its ref_min_score / ref_max_score) and D4RL's v2
scale, which makes the numbers comparable (approximately: the envs here are v5) with published
tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ampl_jax.data import scores
from ampl_jax.data.scores import evaluation_scores  # noqa: F401  (train and eval_rules read it here)
from ampl_jax.metrics import D4RL_COLUMN
from ampl_jax.types import DatasetInfo


def score_scales(info: DatasetInfo) -> dict[str, str]:
    """What 0 and 100 mean for each score in summary.json: the two scales differ."""
    return {
        "final_normalized_score": (
            f"dataset scale: 0 = ref_min_score ({info.ref_min_score}), 100 = ref_max_score "
            f"({info.ref_max_score}) of the dataset (its metadata, else D4RL's table)"),
        "final_d4rl_normalized_score": (
            f"D4RL v2 scale: 0 = {info.d4rl_ref_min_score}, 100 = {info.d4rl_ref_max_score}. {scores.D4RL_SCALE_NOTE}"
            if info.d4rl_ref_min_score is not None else f"none: D4RL has no reference returns for {info.env_id}"),
    }


def summary(info: DatasetInfo, all_seeds: tuple[int, ...], steps: int, last_eval: list[dict], fit_epochs: list,
            resumed_from: int | None, processes: int, wall_seconds: float) -> dict[str, Any]:
    """summary.json: one seed's final scores, or the mean over seeds (each seed's in *_per_seed)."""
    stacked = len(all_seeds) > 1
    finals = [e.get("normalized_score", float("nan")) for e in last_eval]
    d4rl_finals = [e.get(D4RL_COLUMN, float("nan")) for e in last_eval]
    return {
        "dataset_id": info.dataset_id,
        "env_id": info.env_id,
        "seed": all_seeds[0],
        "steps": steps,
        "final_normalized_score": float(np.mean(finals)),
        "final_return_mean": float(np.mean([e.get("return_mean", float("nan")) for e in last_eval])),
        "final_return_std": last_eval[0].get("return_std") if not stacked else None,
        "model_fit_epochs": fit_epochs[0] if not stacked else fit_epochs,
        "resumed_from_step": resumed_from,
        **({"seeds": list(all_seeds), "final_normalized_score_per_seed": finals,
            "final_normalized_score_std": float(np.std(finals, ddof=1))} if stacked else {}),
        # The same returns on D4RL's v2 scale (approximate: the envs are v5); see "score_scales".
        "final_d4rl_normalized_score": float(np.mean(d4rl_finals)),
        **({"final_d4rl_normalized_score_per_seed": d4rl_finals,
            "final_d4rl_normalized_score_std": float(np.std(d4rl_finals, ddof=1))} if stacked else {}),
        "score_scales": score_scales(info),
        **({"processes": processes} if processes > 1 else {}),
        "wall_seconds": wall_seconds,
        "compute": compute_platform(),
    }


def compute_platform() -> dict[str, Any]:
    """What the run computed on: JAX's backend ("cpu", "gpu", "tpu"), the device kind (e.g.
    "NVIDIA H100 80GB HBM3", "TPU v4") and the device counts, so a summary shows whether the run
    was on the accelerator it was meant for (docs/accelerators.md)."""
    import jax

    return {"backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
            "devices": jax.device_count(), "local_devices": jax.local_device_count(), "jax": jax.__version__}
