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

# The JAX / TensorFlow / Keras adapter suites (Keras on every backend: on torch in-process, a full
# verification of each of its layers at 1,500 calls, ~3 CPU-minutes; on jax and tensorflow in
# subprocesses) import more frameworks: `make test-frameworks` runs them (and `.ci/run` runs both
# targets), so `make test`'s tests take under 8 minutes on 2 idle cores (6:27 measured at stop 29, 7:56 at stop 30
# on a clean clone of a machine that ran ~20 % slower that day: close to the limit).
FRAMEWORK_FILES = ("test_jax.py", "test_tf.py", "test_keras.py", "test_keras_jax.py", "test_keras_tensorflow.py",
                   "test_scan_without_torch.py")


# The heaviest 200-seed measurements (each over ~100 s of one core in the last full run, 20 tests, ~65 CPU-minutes
# together): `make test-nightly` runs them (and `make reports`), so that `.ci/run` (make test, test-slow,
# test-frameworks) stays under 30 minutes on 2 cores. Their rates are also committed, measured, in reports/issue22/
# and reports/quality.md. A node id here is a test function (every parameter) or one parametrised case.
NIGHTLY = (
    "tests/meta/test_input_calibration.py::test_false_alarm_rate_at_or_below_nominal",
    "tests/meta/test_input_false_pass.py::test_a_difference_inside_the_margin_is_certified_or_established_never_called_large",
    "tests/meta/test_input_false_pass.py::test_false_pass_rate_against_input_dependent_rates",
    "tests/meta/test_marginal_rates.py::test_conditioned_pair_tests_fail_at_most_nominal",
    "tests/meta/test_marginal_rates.py::test_marginal_check_false_alarms_at_or_below_nominal",
    "tests/meta/test_false_pass.py::test_false_pass_rate_against_call_level_faults",
    "tests/meta/test_long_horizon_rates.py::test_dropblock_dispersion_against_its_simulated_null_false_alarms_at_or_below_nominal",
    "tests/meta/test_long_horizon_rates.py::test_dispersion_false_alarms_at_or_below_nominal[0.3]",
    "tests/meta/test_calibration.py::test_false_alarm_rate_at_or_below_nominal[drop_map_matches_theory_by_binomial-dropblock_2d]",
    "tests/meta/test_calibration.py::test_false_alarm_rate_at_or_below_nominal[masks_fresh_across_calls_by_fisher-spatial_dropout_2d]",
    "tests/meta/test_calibration.py::test_false_alarm_rate_at_or_below_nominal[variance_matches_by_t_test-gaussian_dropout]",
    "tests/meta/test_calibration.py::test_false_alarm_rate_at_or_below_nominal[drop_rate_matches_by_binomial-dropout]",
)


def _nightly(nodeid: str) -> bool:
    return any(nodeid == n or nodeid.startswith(n + "[") for n in NIGHTLY)


def pytest_collection_modifyitems(config, items):
    import pytest
    for item in items:
        if item.path.name in FRAMEWORK_FILES:
            item.add_marker(pytest.mark.frameworks)
        if _nightly(item.nodeid):
            item.add_marker(pytest.mark.nightly)
