"""Keras 3 adapter: real layers, no mocks, small budgets.

Runs on the backend keras was first imported with in this process (``KERAS_BACKEND``; torch
when unset). ``make test`` runs it on torch in-process, and ``test_keras_jax.py`` /
``test_keras_tensorflow.py`` rerun this file in a subprocess started with the other backend's
environment (``keras_layers.BACKEND_ENV``): a Keras backend is fixed per process.
"""
from __future__ import annotations

import os
import random

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
keras_layers = pytest.importorskip("dropverify.targets.keras_layers")

from dropverify.checks import ERROR, FAIL, INCONCLUSIVE, PASS, Settings  # noqa: E402
from dropverify.errors import TargetUnavailable  # noqa: E402
from dropverify.runner import verify  # noqa: E402
from dropverify.targets import get_target, target_names  # noqa: E402
from dropverify.targets._base import numpy_dtype  # noqa: E402
from dropverify.targets.keras_layers import BACKEND, BACKEND_ENV, BACKENDS, PREFIX, TARGETS, KerasTarget, \
    keras_spec  # noqa: E402

SETTINGS = Settings(max_calls=1500, max_units=400_000, seed=20261126, fault_fraction=0.1)
PRE = PREFIX[BACKEND]
NAMES = sorted(n for n in TARGETS if n.partition(":")[0] == PRE)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Probe tensors are small: torch's intra-op threads only add contention on shared CPUs."""
    if BACKEND != "torch":
        yield
        return
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# target name -> {check: verdict} for every check that does not PASS
# Keras' SeedGenerator on the torch backend draws call k of seed s from seed s + k, so a layer seeded s + 1
# replays the mask stream of a layer seeded s one call later (replicas seeded base + rank share masks).
# The exact repeat check sees the same replay: call 0 after seed s+1 is call 1 after seed s, bit for bit.
# jax ([s, k] as a raw threefry key) and tensorflow ([s, k] as a stateless seed pair) hash the pair: no overlap.
_OVERLAP = {"seed_streams_do_not_overlap_by_fisher": FAIL, "masks_never_repeat_by_hash": FAIL}
EXPECTED_NOT_PASS = {name: dict(_OVERLAP) if BACKEND == "torch" else {}
                     for name in NAMES if name != f"{PRE}:Dropout[unseeded]"}
# Keras accepts rate=1 but AlphaDropout.call computes ((1 - rate) * ...) ** -0.5 -> ZeroDivisionError,
# where the contract (PyTorch convention) wants zeros with zero gradients (every backend: it is Python math).
EXPECTED_NOT_PASS[f"{PRE}:AlphaDropout"]["p_one_gives_zeros_with_finite_gradients"] = ERROR
# On torch every check runs (the in-process backend); the other backends' subprocess runs the checks
# that exercise what the backend changes (tensors, seeding, random path, gradients), to stay within ~1 minute.
BACKEND_CHECKS = None if BACKEND == "torch" else [
    "drop_rate_matches_by_binomial", "multiplier_values_exact", "mask_constant_along_shared_axes",
    "masks_fresh_across_calls_by_fisher", "masks_independent_across_seeds_by_fisher",
    "seed_streams_do_not_overlap_by_fisher", "same_seed_reproduces", "masks_never_repeat_by_hash",
    "gradient_uses_forward_mask", "eval_mode_deterministic_and_exact", "p_one_gives_zeros_with_finite_gradients",
    "dtype_and_shape_preserved"]


def _verdicts(run) -> dict:
    return {r.check: r.verdict for r in run.results}


@pytest.mark.parametrize("name", NAMES)
def test_builtin_target_verdicts(name: str) -> None:
    specs = get_target(name)
    assert all(s.env == BACKEND_ENV[BACKEND] for s in specs)
    result = verify(specs, SETTINGS, checks=BACKEND_CHECKS)
    want = EXPECTED_NOT_PASS.get(name, {})
    for run in result.targets:
        got = _verdicts(run)
        assert len(got) >= (10 if BACKEND_CHECKS is None else 8), got  # GaussianDropout: no mask checks
        for check, verdict in got.items():
            assert verdict == want.get(check, PASS), (run.spec_name, check, verdict,
                                                      [r.message for r in run.results if r.check == check])
        for check in want:
            assert check in got, (run.spec_name, check)


def test_registry_lists_keras_targets() -> None:
    for backend in BACKENDS:
        pre = PREFIX[backend]
        names = target_names(pre)
        assert {f"{pre}:Dropout", f"{pre}:Dropout[noise_shape]", f"{pre}:SpatialDropout1D",
                f"{pre}:SpatialDropout2D", f"{pre}:SpatialDropout3D", f"{pre}:GaussianDropout",
                f"{pre}:AlphaDropout"} <= set(names)
        assert all(n.startswith(pre + ":") for n in names)
    assert [s.name for s in get_target(f"{PRE}:SpatialDropout2D")] == [
        f"{PRE}:SpatialDropout2D", f"{PRE}:SpatialDropout2D[channels_first]"]
    spec = get_target(f"{PRE}:Dropout[noise_shape]")[0]
    assert spec.variant == "variational_dropout" and spec.params == {"batch_first": True}
    assert any("noise_shape=(None, 1, None)" in c for c in spec.conventions)


def test_specs_of_other_backends_carry_their_env_and_refuse_to_build_here() -> None:
    assert BACKEND_ENV["jax"] == {"KERAS_BACKEND": "jax", "JAX_ENABLE_X64": "1"}
    for backend in BACKENDS:
        spec = get_target(f"{PREFIX[backend]}:Dropout")[0]
        assert spec.env == BACKEND_ENV[backend]
        if backend != BACKEND:
            with pytest.raises(TargetUnavailable, match=f"KERAS_BACKEND={backend}"):
                spec.build({"p": 0.5})


# ------------------------------------------------------------------------------ deliberately broken layers

class FixedMaskDropout(keras.layers.Layer):
    """Broken on purpose: draws one mask on the first call and reuses it on every call."""

    def __init__(self, rate: float, seed=None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rate = rate
        self.seed_generator = keras.random.SeedGenerator(seed)
        self._mask = None

    def call(self, x, training=False):
        if not training or self.rate == 0:
            return x
        if self._mask is None or tuple(self._mask.shape) != tuple(x.shape):
            u = keras.random.uniform(keras.ops.shape(x), seed=self.seed_generator)
            self._mask = u >= self.rate
        return keras.ops.where(self._mask, x / (1.0 - self.rate), keras.ops.zeros_like(x))


class DropsInEval(keras.layers.Dropout):
    """Broken on purpose: ignores ``training`` and always drops."""

    def call(self, inputs, training=False):
        return super().call(inputs, training=True)


class NoRescaleDropout(keras.layers.Layer):
    """Broken on purpose: drops but does not scale the kept values by 1 / (1 - rate)."""

    def __init__(self, rate: float, seed=None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rate = rate
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=False):
        if not training or self.rate == 0:
            return x
        u = keras.random.uniform(keras.ops.shape(x), seed=self.seed_generator, dtype=self.compute_dtype)
        return keras.ops.where(u >= self.rate, x, keras.ops.zeros_like(x))


class PythonSeedDropout(keras.layers.Layer):
    """Broken only when compiled (the keras 18426 class): the seed is an int drawn from Python's random at
    call time, fresh on every eager call but a constant of the jax.jit / tf.function trace."""

    def __init__(self, rate: float, seed=None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rate = rate
        self.rng = random.Random(seed)

    def call(self, x, training=False):
        if not training:
            return x
        return keras.random.dropout(x, self.rate, seed=self.rng.randrange(2 ** 31))


@pytest.mark.skipif(BACKEND == "torch", reason="compiled calls (jax.jit / tf.function) are the jax and tf backends'")
@pytest.mark.parametrize("compiled", [False, True])
def test_trace_time_seed_fails_only_when_compiled(compiled: bool) -> None:
    spec = keras_spec("user:PythonSeedDropout", "dropout", lambda p, **k: PythonSeedDropout(p, **k),
                      {"p": 0.5}, shape=(16, 8, 4, 4), compiled=compiled)
    result = verify([spec], SETTINGS, checks=["masks_fresh_across_calls_by_fisher", "masks_never_repeat_by_hash",
                                              "same_seed_reproduces"])
    got = _verdicts(result.targets[0])
    want = FAIL if compiled else PASS
    assert got == {"masks_fresh_across_calls_by_fisher": want, "masks_never_repeat_by_hash": want,
                   "same_seed_reproduces": PASS}, result.targets[0].results


def test_fixed_mask_layer_fails_fresh_mask_check() -> None:
    spec = keras_spec("user:FixedMaskDropout", "dropout", lambda p, **k: FixedMaskDropout(p, **k),
                      shape=(16, 8, 4, 4))
    result = verify([spec], SETTINGS, checks=["masks_fresh_across_calls_by_fisher", "same_seed_reproduces",
                                              "masks_never_repeat_by_hash", "drop_rate_matches_by_binomial",
                                              "multiplier_values_exact"])
    got = _verdicts(result.targets[0])
    assert got["masks_fresh_across_calls_by_fisher"] == FAIL, result.targets[0].results
    assert got["masks_never_repeat_by_hash"] == FAIL
    assert got["same_seed_reproduces"] == PASS
    # one mask counted on every call is not evidence about the rate: not assessed, under the root cause
    assert got["drop_rate_matches_by_binomial"] == INCONCLUSIVE
    assert got["multiplier_values_exact[contiguous]"] == PASS
    (cause,) = [c for c in result.targets[0].root_causes if c.kind == FAIL]
    assert cause.summary.startswith("the same mask on most calls")


def test_layer_dropping_in_eval_fails_eval_check() -> None:
    spec = keras_spec("user:DropsInEval", "dropout", lambda p, **k: DropsInEval(p, **k),
                      shape=(16, 8, 4, 4))
    result = verify([spec], SETTINGS, checks=["eval_mode_deterministic_and_exact", "same_seed_reproduces"])
    got = _verdicts(result.targets[0])
    assert got == {"eval_mode_deterministic_and_exact": FAIL, "same_seed_reproduces": PASS}


def test_layer_without_rescale_fails_values_and_expectation() -> None:
    spec = keras_spec("user:NoRescaleDropout", "dropout", lambda p, **k: NoRescaleDropout(p, **k), shape=(16, 8, 4, 4))
    result = verify([spec], SETTINGS, checks=["multiplier_values_exact", "expectation_matches_by_t_test",
                                              "drop_rate_matches_by_binomial"])
    got = _verdicts(result.targets[0])
    assert got["multiplier_values_exact[contiguous]"] == FAIL
    assert got["expectation_matches_by_t_test"] == FAIL
    assert got["drop_rate_matches_by_binomial"] == PASS


# ------------------------------------------------------------------------------ the adapter itself

def _dropout_target(p: float = 0.5, **kw) -> KerasTarget:
    return get_target(f"{PRE}:Dropout")[0].build({"p": p, **kw})


def test_seed_reproduces_and_calls_advance() -> None:
    tgt = _dropout_target()
    x = (0.5 + np.random.default_rng(0).random((8, 64))).astype(np.float32)
    tgt.seed(123)
    a1, a2 = tgt.forward((x,)), tgt.forward((x,))
    tgt.seed(123)
    b1, b2 = tgt.forward((x,)), tgt.forward((x,))
    assert np.array_equal(a1, b1) and np.array_equal(a2, b2)
    assert not np.array_equal(a1, a2)
    tgt.seed(2 ** 40 + 123)  # harness seeds exceed Keras' int32 seed range: taken mod 2**31
    assert np.array_equal(tgt.forward((x,)), a1)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_dtype_preserved_and_gradients_follow_the_mask(dtype: str) -> None:
    dt = numpy_dtype(dtype)
    tgt = _dropout_target(0.3)
    assert dt in tgt.dtypes
    x = (0.5 + np.random.default_rng(1).random((4, 5, 6))).astype(dt)
    tgt.seed(5)
    y = tgt.forward((x,))
    assert y.dtype == np.dtype(dt) and y.shape == x.shape
    assert tgt.forward((x,), training=False).dtype == np.dtype(dt)
    g = np.random.default_rng(2).normal(size=x.shape)
    y, (dx,) = tgt.forward_backward((x,), g)
    assert dx.dtype == np.dtype(dt)
    m = y.astype(np.float64) / x.astype(np.float64)
    assert 0 < np.mean(m == 0) < 1
    np.testing.assert_allclose(dx.astype(np.float64), g.astype(dt).astype(np.float64) * m, rtol=2e-2, atol=1e-2)


@pytest.mark.parametrize("layout", ["transposed", "strided"] + (["channels_last"] if BACKEND == "torch" else []))
def test_layouts_give_the_same_values(layout: str) -> None:
    tgt = _dropout_target()
    x = (0.5 + np.random.default_rng(3).random((4, 3, 5, 6))).astype(np.float32)
    assert layout in tgt.layouts
    tgt.seed(9)
    ref = tgt.forward((x,))
    tgt.seed(9)
    assert np.array_equal(tgt.forward((x,), layout=layout), ref)


def test_gradients_include_trainable_weights() -> None:
    """d sum(g * y) / dW from the backend's own differentiation, for a layer with a weight."""
    class ScaledDropout(keras.layers.Dropout):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(), initializer="ones", dtype=self.variable_dtype)

        def call(self, inputs, training=False):
            return super().call(inputs * keras.ops.cast(self.w, inputs.dtype), training=training)

    tgt = keras_spec("user:ScaledDropout", "dropout", lambda p, **k: ScaledDropout(p, **k)).build({"p": 0.5})
    x = (0.5 + np.random.default_rng(4).random((4, 8))).astype(np.float64)
    g = np.random.default_rng(5).normal(size=x.shape)
    tgt.seed(1)
    y, (dx, dw) = tgt.forward_backward((x,), g)
    np.testing.assert_allclose(dw, np.sum(g * y / 1.0), rtol=1e-12)  # y = w x m with w = 1: dy/dw = x m = y
    np.testing.assert_allclose(dx, g * y / x, rtol=1e-12)


def test_bfloat16_drop_rate_follows_the_backend() -> None:
    """At p = 0.01 in bfloat16, Keras on tensorflow drops 2/128 = 0.0156 (TF draws the uniform in
    bfloat16: a grid of 2**-7); on torch and jax the rate is p (certified within the margin)."""
    from dropverify.targets.resolve import resolve_target
    specs = resolve_target(f"{PRE}:Dropout", params={"p": 0.01}, dtype="bfloat16", shape=(64, 32, 8, 8))
    (res,) = verify(specs, SETTINGS, checks=["drop_rate_matches_by_binomial"]).targets[0].results
    if BACKEND == "tensorflow":
        assert res.verdict == FAIL and res.ci[0] <= 2 / 128 <= res.ci[1], res
    else:
        assert res.verdict == PASS, res


def test_rates_keras_rejects_raise_at_build() -> None:
    for layer in ("Dropout", "GaussianDropout", "AlphaDropout", "SpatialDropout2D"):
        spec = get_target(f"{PRE}:{layer}")[0]
        for bad in (-0.1, 1.5):
            with pytest.raises(ValueError):
                spec.build(dict(spec.params, p=bad))


def test_rate_one_behaviour_is_keras_own() -> None:
    x = (np.ones((3, 4), np.float32),)
    tgt = _dropout_target(1.0)
    tgt.seed(0)
    assert not tgt.forward(x).any()
    _, (dx,) = tgt.forward_backward(x, np.ones((3, 4)))
    assert not dx.any()
    for layer in ("GaussianDropout", "AlphaDropout"):
        t = get_target(f"{PRE}:{layer}")[0].build({"p": 1.0})  # accepted at construction ...
        t.seed(0)
        with pytest.raises(ZeroDivisionError):      # ... but the training call divides by zero
            t.forward(x)


def test_adjacent_seeds_give_shifted_streams_on_torch_only() -> None:
    """A Keras fact on torch (reported, not a check): call k under seed s draws from
    manual_seed(s + k), so seed s's second mask is seed s+1's first. jax and tensorflow hash
    the pair [s, k]: no such shift."""
    tgt = _dropout_target()
    x = (np.ones((4, 256), np.float32),)
    tgt.seed(100)
    tgt.forward(x)
    second = tgt.forward(x)
    tgt.seed(101)
    assert np.array_equal(tgt.forward(x), second) == (BACKEND == "torch")


def test_seedless_factory_uses_global_seed() -> None:
    spec = get_target(f"{PRE}:Dropout[unseeded]")[0]
    tgt = spec.build({"p": 0.5})
    x = (np.ones((8, 128), np.float32),)
    tgt.seed(4)
    a = tgt.forward(x)
    tgt.seed(4)
    assert np.array_equal(tgt.forward(x), a)


def test_spatial_1d_has_no_channels_first() -> None:
    spec = get_target(f"{PRE}:SpatialDropout1D")[0]
    with pytest.raises(ValueError, match="data_format"):
        spec.build({"p": 0.5, "channels_last": False})


def test_factory_without_dtype_declares_its_compute_dtype() -> None:
    spec = keras_spec("user:plain", "dropout", lambda p: keras.layers.Dropout(p))
    tgt = spec.build({"p": 0.5})
    assert tgt.dtypes == (np.float32,)
    x = (np.ones((8, 128), np.float32),)
    tgt.seed(11)
    a = tgt.forward(x)
    tgt.seed(11)  # seed=None layer: reproducible through keras.utils.set_random_seed
    assert np.array_equal(tgt.forward(x), a)


def test_user_factory_file_through_cli_path(tmp_path) -> None:
    user = pytest.importorskip("dropverify.targets.user")
    mod = tmp_path / "my_keras_layers.py"
    mod.write_text("import keras\n"
                   "def make(p, seed=None, dtype=None):\n"
                   "    return keras.layers.Dropout(p, seed=seed, dtype=dtype)\n")
    spec = user.user_spec(f"{mod}:make", "dropout", {"p": 0.5}, shape=(8, 4, 4, 4))
    tgt = spec.build(spec.resolved_params())
    assert set(tgt.dtypes) == {np.float16, numpy_dtype("bfloat16"), np.float32, np.float64}
    assert spec.env == {}  # a user's layer runs on the backend of the process that built the spec
    x = (np.full((8, 4, 4, 4), 1.0, np.float64),)
    tgt.seed(3)
    y = tgt.forward(x)
    assert y.dtype == np.float64 and set(np.unique(y)) <= {0.0, 2.0}
