"""Shared test configuration: a deterministic hypothesis profile for CI and local runs."""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", derandomize=True, database=None, deadline=None, max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The JAX / TensorFlow / Keras-on-other-backends adapter suites import two more frameworks and
# start subprocesses per backend (several CPU-minutes): `make test-frameworks` runs them (and
# `.ci/run` runs both targets), so `make test` stays well under 20 minutes on 2 cores.
FRAMEWORK_FILES = ("test_jax.py", "test_tf.py", "test_keras_jax.py", "test_keras_tensorflow.py")


def pytest_collection_modifyitems(config, items):
    import pytest
    for item in items:
        if item.path.name in FRAMEWORK_FILES:
            item.add_marker(pytest.mark.frameworks)
