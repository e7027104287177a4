"""A Keras (jax backend) or Flax NNX scan runs where torch is not installed: each runs in a subprocess
whose imports of torch, torchvision and timm fail as they would without the packages, and must end with
the scan's own verdict (exit 0 for a correct model, 1 for a broken one), never an internal error, with
torch never imported."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("flax.nnx")
pytest.importorskip("keras")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "scan"
BLOCKER = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "timm"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _NoTorch())
"""


def _scan_without_torch(tmp_path: Path, backend: str, *argv: str) -> subprocess.CompletedProcess:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    script = ("import sys\nfrom dropverify.cli import main\ncode = main(sys.argv[1:])\n"
              "assert 'torch' not in sys.modules, 'torch was imported'\nsys.exit(code)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]), KERAS_BACKEND=backend)
    return subprocess.run([sys.executable, "-c", script, "scan", *argv, "--max-calls", "200", "--check",
                           "multiplier_values_exact", "--quiet"], capture_output=True, text=True, env=env,
                          timeout=600)


def test_nnx_scans_without_torch(tmp_path):
    ok = _scan_without_torch(tmp_path, "jax", f"{EXAMPLES / 'nnx_models.py'}:transformer_block",
                             "--shape", "8,8,16", "--report", str(tmp_path / "nnx.md"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASS         scan of nnx_models.TransformerBlock" in ok.stdout
    assert (tmp_path / "nnx.md").exists() and (tmp_path / "nnx.json").exists()
    broken = _scan_without_torch(tmp_path, "jax", f"{EXAMPLES / 'nnx_models.py'}:rng_not_advanced",
                                 "--input", f"{EXAMPLES / 'nnx_models.py'}:example_input")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "does not advance between calls" in broken.stdout


def test_keras_on_jax_scans_without_torch(tmp_path):
    ok = _scan_without_torch(tmp_path, "jax", f"{EXAMPLES / 'keras_models.py'}:sequential", "--shape", "8,16")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = _scan_without_torch(tmp_path, "jax", f"{EXAMPLES / 'keras_models.py'}:flag_ignored",
                                 "--shape", "8,16")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "ignores the flag it is passed" in broken.stdout


def test_keras_on_torch_without_torch_is_a_usage_error(tmp_path):
    out = _scan_without_torch(tmp_path, "torch", f"{EXAMPLES / 'keras_models.py'}:sequential", "--shape", "8,16")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "internal error" not in out.stderr and "torch" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
