"""Baselines in AMPL's framework: same data pipeline, world model and loop; only the method differs.

Each module exposes AMPL's interface (make_agent, init_state, build_update_step,
make_update_step, make_select_action, NEEDS_MODEL); `get(method)` picks one by config.method.
"""

from __future__ import annotations

from types import ModuleType

from ampl_jax.baselines import bc, mopo

METHODS: dict[str, ModuleType] = {"bc": bc, "mopo": mopo}


def get(method: str) -> ModuleType:
    """The baseline module for config.method ("bc" | "mopo"); AMPL itself is not in here."""
    try:
        return METHODS[method]
    except KeyError:
        raise ValueError(f"unknown baseline {method!r}: one of {', '.join(sorted(METHODS))}") from None


__all__ = ["METHODS", "bc", "get", "mopo"]
