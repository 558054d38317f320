"""Every module of the package imports in one process (absl flags are global: no module may
define its flags at import time under a name another one uses)."""

from __future__ import annotations

import importlib
import pkgutil

import ampl_jax


def test_every_module_imports_together():
    names = [m.name for m in pkgutil.walk_packages(ampl_jax.__path__, "ampl_jax.")]
    assert len(names) > 30
    failed = {}
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001  (report every failure at once)
            failed[name] = f"{type(e).__name__}: {str(e)[:120]}"
    assert not failed, failed
