"""Usage errors (issue 25): a misspelt variant, parameter, target, check, dtype or shape is
answered in one line with exit 2, with the closest names ("did you mean ...?"), in about a
second and before any framework is imported, on the command line and in ``dropverify.verify``.

Each CLI case runs in a subprocess under ``python -X importtime``, whose log names every module
the process imported before it exited: torch, Keras, JAX, TensorFlow (and their adapters) must
not be among them. The time asserted is the child's CPU time (user + system), which other work
on a shared machine does not inflate as it does the wall time.
"""
from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time

import pytest

FRAMEWORKS = ("torch", "torchvision", "timm", "keras", "jax", "jaxlib", "flax", "equinox", "tensorflow",
              "dropverify.targets.torch_nn", "dropverify.targets.keras_layers")
LIMIT_S = 2.0

CASES = [  # (argv, what the one line must say)
    (["run", "numpy:dropot"], "did you mean 'dropout'"),
    (["verify", "--reference", "--variant", "dropot"], "did you mean 'dropout'"),
    (["run", "torch:Dropout", "--variant", "dropot"], "did you mean 'dropout'"),
    (["run", "torch:Dropout", "--variant", "spatial_dropout_2d"], "torch:Dropout implements 'dropout'"),
    (["run", "examples/project/nothing.py:make", "--variant", "dropot"], "did you mean 'dropout'"),
    (["run", "torch:Dropot"], "did you mean 'torch:Dropout'"),
    (["run", "keras:SpatialDropout2d"], "did you mean 'keras:SpatialDropout2D'"),
    (["run", "tf:nn.dropot"], "did you mean 'tf:nn.dropout'"),
    (["run", "flax:nnx.dropout"], "did you mean 'flax:nnx.Dropout'"),
    (["run", "torc:Dropout"], "did you mean 'torch:Dropout'"),
    (["run", "json:dumsp", "--variant", "dropout"], "module 'json' has no attribute 'dumsp'; did you mean 'dump'"),
    (["verify", "--target", "timm:DropBlock2D"], "did you mean 'timm:DropBlock2d'"),
    (["run", "torch:Dropout", "--param", "pp=0.1"], "unknown parameter 'pp' for dropout; known: p; did you mean 'p'"),
    (["run", "timm:DropBlock2d", "--param", "blocksize=5"], "did you mean 'block_size'"),
    (["run", "timm:DropBlock2d", "--param", "seed_region=vallid"], "did you mean 'valid'"),
    (["run", "torch:Dropout", "--param", "p=1.5"], "p=1.5, but should be"),
    (["run", "torch:Dropout", "--dtype", "flaot32"], "did you mean 'float32'"),
    (["run", "torch:Dropout", "--device", "cdua"], "did you mean 'cuda'"),
    (["run", "torch:Dropout", "--shape", "64,x"], "--shape '64,x', but should be comma-separated integers"),
    (["run", "torch:Dropout2d", "--shape", "8,4"], "input rank=2 (shape (8, 4)), but should be"),
    (["run", "torch:Dropout", "--check", "drop_rate_matches_by_binomal"], "did you mean 'drop_rate_matches_by_binomial'"),
    (["run", "torch:Dropout", "--check", "masks_fresh"], "did you mean 'masks_fresh_across_calls_by_fisher'"),
    (["verify-thirdparty", "--framework", "torh"], "did you mean 'torch'"),
    (["verify", "--reference", "--variant", "dropout", "--jobs", "0"], "--jobs 0, but should be at least 1"),
    (["run", "numpy:dropout", "--jobs", "-2"], "--jobs -2, but should be at least 1"),
    (["run", "torch:Dropout", "--seed", "-1"], "--seed -1, but should be a non-negative integer"),
    (["run", "torch:Dropout", "--layout", "transposd"], "did you mean 'transposed'"),
    (["run", "torch:Dropout", "--profile", "quik"], "did you mean 'quick'"),
    (["run", "torch:Dropout", "--quick", "--profile", "thorough"], "--profile thorough and --quick: give one profile"),
    (["run", "torch:Dropout", "--shape", "0,4"], "--shape '0,4', but every size should be at least 1"),
    (["verify", "--target", "torch:Dropout", "--variant", "dropot"], "did you mean 'dropout'"),
]


def _run(args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "dropverify", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=120)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    message = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    return proc.returncode, proc.stdout, message, imported, cpu, wall


@pytest.mark.parametrize("args,needle", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_usage_error_is_one_line_with_a_suggestion_before_any_framework_loads(args, needle):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code, out, message, imported, cpu, wall = _run(args, root)
    assert code == 2, (out, message)
    assert len(message) == 1 and message[0].startswith("dropverify: error: "), message
    assert needle in message[0], message[0]
    assert "dropverify.cli" in imported or "dropverify.__main__" in imported  # the log is the CLI's own
    loaded = sorted(m for m in FRAMEWORKS if m in imported)
    assert not loaded, f"{loaded} imported before the usage error"
    assert cpu < LIMIT_S, f"{cpu:.2f} s of CPU (wall {wall:.2f} s) before the usage error"


def test_listing_targets_imports_no_framework():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code, out, message, imported, cpu, _ = _run(["list"], root)
    assert code == 0 and "torch:Dropout2d" in out and "flax:nnx.Dropout" in out and "tf:nn.dropout" in out
    assert not [m for m in FRAMEWORKS if m in imported]


def test_verify_in_python_raises_invalid_argument_with_the_suggestion_before_importing_torch():
    code = ("import sys, dropverify\n"
            "for target, kw in (('torch:Dropot', {}), ('torch:Dropout', {'pp': 0.1}), ('numpy:dropot', {}),\n"
            "                   ('torch:Dropout', {'checks': ['drop_rate_matches_by_binomal']}),\n"
            "                   ('torch:Dropout', {'dtype': 'flaot32'}), ('torch:Dropout', {'layout': 'transposd'}),\n"
            "                   ('torch:Dropout', {'profile': 'quik'}), ('torch:Dropout2d', {'shape': (8, 4)}),\n"
            "                   ('torch:Dropout', {'shape': (0, 4)})):\n"
            "    try:\n"
            "        dropverify.verify(target, **kw)\n"
            "    except dropverify.InvalidArgument as exc:\n"
            "        print(exc)\n"
            "print('torch loaded:', 'torch' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(lines) == 10, proc.stdout + proc.stderr
    assert "did you mean 'torch:Dropout'" in lines[0]
    assert "unknown parameter 'pp' for dropout; known: p; did you mean 'p'?" in lines[1]
    assert "variant='dropot'" in lines[2] and "did you mean 'dropout'" in lines[2]
    assert "did you mean 'drop_rate_matches_by_binomial'" in lines[3]
    assert "dtype='flaot32'" in lines[4] and "did you mean 'float32'" in lines[4]
    assert "layout='transposd'" in lines[5] and "did you mean 'transposed'" in lines[5]
    assert "profile='quik'" in lines[6] and "did you mean 'quick'" in lines[6]
    assert "input rank=2 (shape (8, 4)), but should be" in lines[7]
    assert "shape=(0, 4)" in lines[8]
    assert lines[9] == "torch loaded: False"


def test_did_you_mean_names_close_choices_and_nothing_when_none_is_close():
    from dropverify.errors import did_you_mean, unknown_choice
    assert did_you_mean("dropot", ["dropout", "zoneout"]) == "; did you mean 'dropout'?"
    assert did_you_mean("FLOAT32", ["float32", "float64"]).startswith("; did you mean 'float32'")
    assert did_you_mean("masks_fresh", ["masks_fresh_across_calls_by_fisher", "x"]) == \
        "; did you mean 'masks_fresh_across_calls_by_fisher'?"
    assert did_you_mean("bogus", ["dropout", "zoneout"]) == ""
    err = unknown_choice("variant", "bogus", ["dropout", "zoneout"])
    assert str(err) == "variant='bogus', but should be one of: dropout, zoneout"


ADAPTER_FRAMEWORKS = [pytest.param(fw, marks=[pytest.mark.frameworks] if fw in ("tf", "flax", "equinox", "jax") else [])
                      for fw in ("torch", "torchvision", "timm", "keras", "keras[jax]", "keras[tensorflow]", "tf",
                                 "flax", "equinox", "jax")]


@pytest.mark.parametrize("framework", ADAPTER_FRAMEWORKS)
def test_catalogue_names_every_target_of_the_adapter_with_its_variant(framework):
    """The table the usage errors read is the adapters' own: same names, same order, same variants."""
    from dropverify.errors import TargetUnavailable
    from dropverify.targets import ADAPTERS, adapter_module, get_target
    from dropverify.targets.catalogue import catalogue_names, catalogue_variant
    try:
        module = adapter_module(framework)
    except TargetUnavailable as exc:
        pytest.skip(str(exc))
    names = tuple(n for n in module.TARGETS if n.partition(":")[0] == framework)
    assert catalogue_names(framework) == names
    from dropverify.variants import get_contract
    for name in names:
        specs = get_target(name)
        assert {s.variant for s in specs} == {catalogue_variant(name)}, name
        for s in specs:  # the parameters and ranks checked before the import are the ones the built spec takes
            assert s.resolved_contract().params == get_contract(s.variant).params, name
            assert tuple(s.resolved_contract().ranks) == tuple(get_contract(s.variant).ranks), name
    assert set(ADAPTERS) == {fw for fw in ADAPTERS if catalogue_names(fw)}
