"""tests/test_scan_keras.py rerun in a process started with KERAS_BACKEND=jax and one with
KERAS_BACKEND=tensorflow (Keras fixes its backend at import): the Keras scan on every backend."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "targets"))
from _keras_backend import needs  # noqa: E402

pytestmark = pytest.mark.frameworks


def _rerun(backend: str) -> None:
    from dropverify.targets import get_target
    env = {**os.environ, **get_target(f"keras[{backend}]:Dropout")[0].env}
    here = Path(__file__).with_name("test_scan_keras.py")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", str(here)],
                          cwd=here.parents[1], env=env, capture_output=True, text=True, timeout=900)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    assert proc.returncode == 0, tail
    summary = [line for line in proc.stdout.splitlines() if " passed" in line]
    assert summary and "skipped" not in summary[-1] and "failed" not in summary[-1], tail


@needs("jax")
def test_keras_scan_on_the_jax_backend() -> None:
    _rerun("jax")


@needs("tensorflow")
def test_keras_scan_on_the_tensorflow_backend() -> None:
    _rerun("tensorflow")
