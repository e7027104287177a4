"""Shared drivers of the per-backend Keras test modules (test_keras_jax.py, test_keras_tensorflow.py):
one module per backend so that pytest-xdist's loadfile runs them on different workers."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXTRA = {"jax": "jax", "tensorflow": "tf"}


def needs(backend: str):
    """Skip unless keras and the backend's package are installed."""
    return pytest.mark.skipif(importlib.util.find_spec(backend) is None or importlib.util.find_spec("keras") is None,
                              reason=f"needs pip install dropverify[keras,{EXTRA[backend]}]")


def rerun_keras_suite(backend: str) -> None:
    """test_keras.py passes, every test of it run, in a subprocess started with the env that the
    ``keras[backend]:...`` specs carry (a Keras backend is fixed per process)."""
    from dropverify.targets import get_target
    spec_env = get_target(f"keras[{backend}]:Dropout")[0].env
    assert spec_env["KERAS_BACKEND"] == backend
    here = Path(__file__).with_name("test_keras.py")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", str(here)],
                          cwd=here.parents[2], env={**os.environ, **spec_env}, capture_output=True, text=True,
                          timeout=900)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
    assert proc.returncode == 0, tail
    summary = [line for line in proc.stdout.splitlines() if " passed" in line]
    assert summary and "skipped" not in summary[-1], tail
    assert int(summary[-1].split(" passed")[0].split()[-1]) >= 25, tail  # every test ran, on this backend


def verify_in_spawned_worker(backend: str) -> None:
    """From this process (another backend), verify() runs ``keras[backend]:Dropout`` in a spawned
    worker started with the spec's env: one Holm family with the local target."""
    from dropverify.checks import PASS, Settings
    from dropverify.runner import verify
    from dropverify.targets import get_target
    specs = get_target(f"keras[{backend}]:Dropout") + get_target("numpy:dropout")
    assert os.environ.get("KERAS_BACKEND") != backend
    result = verify(specs, Settings(max_calls=1500, max_units=400_000, seed=20261126, fault_fraction=0.1),
                    checks=["same_seed_reproduces", "multiplier_values_exact", "seed_streams_do_not_overlap_by_fisher"])
    for run in result.targets:
        got = {r.check: r.verdict for r in run.results}
        assert len(got) >= 3 and set(got.values()) == {PASS}, (run.spec_name, run.results)
