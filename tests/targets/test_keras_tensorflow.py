"""Keras 3 on the tensorflow backend: reruns test_keras.py in a subprocess started with the
environment that the ``keras[tensorflow]:...`` specs carry (a Keras backend is fixed per process)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("keras") is None,
                    reason="needs pip install dropverify[keras,tf]")
def test_keras_layers_on_tensorflow_backend() -> None:
    from dropverify.targets import get_target
    spec_env = get_target("keras[tensorflow]:Dropout")[0].env
    assert spec_env["KERAS_BACKEND"] == "tensorflow"
    here = Path(__file__).with_name("test_keras.py")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", str(here)],
                          cwd=here.parents[2], env={**os.environ, **spec_env}, capture_output=True, text=True,
                          timeout=900)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
    assert proc.returncode == 0, tail
    summary = [line for line in proc.stdout.splitlines() if " passed" in line]
    assert summary and "skipped" not in summary[-1], tail
    assert int(summary[-1].split(" passed")[0].split()[-1]) >= 25, tail  # every test ran, on tensorflow
