"""Not a test module: the world-model test helpers at their old import path, for
tests/world_model/test_fit_checkpoint.py (`from tests.test_world_model import _cfg, _two_regimes`).
The tests themselves are in tests/world_model/test_world_model.py; once that import names the
new place, delete this file."""

from tests.world_model.test_world_model import _cfg, _two_regimes  # noqa: F401
