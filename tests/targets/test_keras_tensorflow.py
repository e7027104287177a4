"""Keras 3 on the tensorflow backend: test_keras.py rerun in a process with KERAS_BACKEND=tensorflow, and the
runner's spawned worker for ``keras[tensorflow]:...`` specs."""
from __future__ import annotations

from _keras_backend import needs, rerun_keras_suite, verify_in_spawned_worker


@needs("tensorflow")
def test_keras_layers_on_tensorflow_backend() -> None:
    rerun_keras_suite("tensorflow")


@needs("tensorflow")
def test_runner_verifies_the_tensorflow_spec_in_a_worker_with_its_env() -> None:
    verify_in_spawned_worker("tensorflow")
