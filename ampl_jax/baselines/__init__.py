"""Baselines in AMPL's framework: same data pipeline, world model and loop; only the method differs.

Each module exposes AMPL's interface (make_agent, init_state, build_update_step,
make_update_step, make_select_action, NEEDS_MODEL); `get(method)` picks one by config.method.
A module with AGENT_NEEDS_DATA = True also gets the dataset as make_agent(..., data=data)
(TD3+BC: its state-normalisation statistics).
"""

from __future__ import annotations

from types import ModuleType

from ampl_jax.baselines import bc, mopo, td3bc

METHODS: dict[str, ModuleType] = {"bc": bc, "mopo": mopo, "td3bc": td3bc}


def get(method: str) -> ModuleType:
    """The baseline module for config.method ("bc" | "mopo" | "td3bc"); AMPL itself is not in here."""
    try:
        return METHODS[method]
    except KeyError:
        raise ValueError(f"unknown baseline {method!r}: one of {', '.join(sorted(METHODS))}") from None


__all__ = ["METHODS", "bc", "get", "mopo", "td3bc"]
