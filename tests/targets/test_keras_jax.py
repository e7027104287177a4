"""Keras 3 on the jax backend: test_keras.py rerun in a process with KERAS_BACKEND=jax, and the
runner's spawned worker for ``keras[jax]:...`` specs."""
from __future__ import annotations

from _keras_backend import needs, rerun_keras_suite, verify_in_spawned_worker


@needs("jax")
def test_keras_layers_on_jax_backend() -> None:
    rerun_keras_suite("jax")


@needs("jax")
def test_runner_verifies_the_jax_spec_in_a_worker_with_its_env() -> None:
    verify_in_spawned_worker("jax")
