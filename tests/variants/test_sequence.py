"""Properties of the sequence-model variants: attention, embedding, word-type, variational, zoneout."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from dropverify.variants import get_contract
from dropverify.errors import InvalidArgument
from dropverify.variants import variant_class

AttentionDropout = variant_class("attention_dropout")
EmbeddingDropout = variant_class("embedding_dropout")
WordEmbeddingDropout = variant_class("word_embedding_dropout")
VariationalDropout = variant_class("variational_dropout")
Zoneout = variant_class("zoneout")
dtypes = st.sampled_from([np.float16, np.float32, np.float64])
seeds = st.integers(0, 2**32 - 1)
probs = st.floats(0.0, 1.0)
dims = st.integers(1, 5)
shapes3 = st.tuples(st.integers(0, 4), dims, dims)
shapes4 = st.tuples(st.integers(0, 3), dims, dims, dims)


def positive(shape, seed, dtype=np.float64):
    return (0.5 + np.random.default_rng(seed).random(shape)).astype(dtype)


def expected_keep(layer, shape, seed):
    """The keep mask the layer must draw from its own generator, broadcast to ``shape``."""
    if layer.p == 0.0:
        return np.ones(shape, bool)
    return np.broadcast_to(np.random.default_rng(seed).random(layer.mask_shape(shape)) >= layer.p, shape)


def inverted(x, p, dtype):
    return x * dtype(1.0 / (1.0 - p) if p < 1 else 0.0)


def constant_along(a, axes):
    ref = a[tuple(slice(0, 1) if i in axes else slice(None) for i in range(a.ndim))]
    return bool(np.all(a == ref))


# -- every variant: contract consistency ---------------------------------------------------

CASES = [("attention_dropout", {}), ("attention_dropout", {"renormalize": True}),
         ("embedding_dropout", {}), ("word_embedding_dropout", {}),
         ("variational_dropout", {}), ("variational_dropout", {"batch_first": False}),
         ("zoneout", {})]


@pytest.mark.parametrize("name, extra", CASES)
@pytest.mark.parametrize("p", [0.0, 0.3, 0.9, 1.0])
@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_contract_decodes_the_layer_mask_and_predicts_its_gradient(name, extra, p, dtype):
    contract = get_contract(name)
    layer = variant_class(name)(p=p, seed=7, **extra)
    inputs = contract.probe_inputs(contract.default_shape, np.random.default_rng(1), dtype)
    y = layer.forward(*inputs)
    assert y.shape == inputs[0].shape and y.dtype == dtype
    decoded = contract.decode_output(inputs, y, layer.params)
    assert decoded.valid.all()
    shape = inputs[0].shape
    rand = np.random.default_rng(7).random(shape if name == "zoneout" else layer.mask_shape(shape))
    want_dropped = np.broadcast_to(rand < p, shape)
    np.testing.assert_array_equal(decoded.dropped, want_dropped)
    axes = contract.shared_axes(layer.params, shape)
    assert constant_along(decoded.dropped, axes)
    if name != "zoneout":
        assert layer.mask_shape(shape) == tuple(1 if i in axes else s for i, s in enumerate(shape))
    g = np.random.default_rng(2).normal(size=shape).astype(dtype)
    got = layer.backward(g)
    got = got if isinstance(got, tuple) else (got,)
    want = contract.input_gradients(inputs, y, g, layer.params)
    assert len(got) == len(want) == len(inputs)
    for a, b in zip(got, want):
        assert a.dtype == dtype and np.all(np.isfinite(a))
        np.testing.assert_allclose(a.astype(np.float64), b, rtol=5e-3, atol=5e-3)


@pytest.mark.parametrize("name, extra", CASES)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_p_zero_equals_eval_bit_for_bit_and_empty_batch(name, extra, dtype):
    contract = get_contract(name)
    inputs = contract.probe_inputs(contract.default_shape, np.random.default_rng(0), dtype)
    train = variant_class(name)(p=0.0, seed=0, **extra).forward(*inputs)
    evald = variant_class(name)(p=0.0, seed=0, **extra).eval().forward(*inputs)
    assert train.tobytes() == evald.tobytes()
    empty = tuple(a[:0] for a in contract.probe_inputs(contract.default_shape, np.random.default_rng(0), dtype))
    assert variant_class(name)(p=0.5, seed=0, **extra).forward(*empty).shape == empty[0].shape


# -- attention dropout ---------------------------------------------------------------------

@given(shape=shapes4, dtype=dtypes, p=probs, seed=seeds)
def test_attention_dropout_is_elementwise_inverted(shape, dtype, p, seed):
    (x,) = get_contract("attention_dropout").probe_inputs(shape, np.random.default_rng(seed), dtype)
    assert np.all(x > 0)
    np.testing.assert_allclose(x.astype(np.float64).sum(axis=-1), 1.0, rtol=5e-3)
    layer = AttentionDropout(p=p, seed=seed)
    y = layer.forward(x)
    keep = expected_keep(layer, shape, seed)
    assert layer.mask_shape(shape) == shape
    np.testing.assert_array_equal(y, np.where(keep, inverted(x, p, dtype), dtype(0)))
    assert np.array_equal(layer.eval().forward(x), x)


@given(shape=shapes4, dtype=dtypes, p=st.floats(0.0, 1.0, exclude_min=True), seed=seeds)
def test_attention_renormalize_rows_sum_to_one(shape, dtype, p, seed):
    (x,) = get_contract("attention_dropout").probe_inputs(shape, np.random.default_rng(seed), dtype)
    layer = AttentionDropout(p=p, renormalize=True, seed=seed)
    y = layer.forward(x)
    keep = expected_keep(layer, shape, seed)
    x64 = x.astype(np.float64)
    total = np.where(keep, x64, 0).sum(axis=-1, keepdims=True)
    want = np.where(keep, x64 / np.where(total > 0, total, 1), 0.0)
    np.testing.assert_allclose(y.astype(np.float64), want, rtol=2e-3, atol=1e-6)
    sums = y.astype(np.float64).sum(axis=-1)
    any_kept = keep.any(axis=-1)
    np.testing.assert_allclose(sums[any_kept], 1.0, rtol=1e-2)
    assert np.all(sums[~any_kept] == 0)


def test_attention_renormalize_gradient_matches_finite_differences():
    (x,) = get_contract("attention_dropout").probe_inputs((1, 2, 3, 5), np.random.default_rng(4))
    layer = AttentionDropout(p=0.4, renormalize=True, seed=3)
    y = layer.forward(x)
    g = np.random.default_rng(5).normal(size=x.shape)
    grad = layer.backward(g)
    keep = y != 0
    eps, numeric = 1e-6, np.zeros_like(x)
    for i in range(x.size):   # finite differences of the loss with the forward mask held fixed
        d = np.zeros(x.size)
        d[i] = eps
        d = d.reshape(x.shape)

        def loss(z):
            kz = np.where(keep, z, 0.0)
            tot = kz.sum(axis=-1, keepdims=True)
            return float(np.sum(g * np.where(tot > 0, kz / np.where(tot > 0, tot, 1), 0)))
        numeric.flat[i] = (loss(x + d) - loss(x - d)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def test_attention_contract_for_renormalize_is_not_expectation_preserving():
    c = get_contract("attention_dropout")
    renorm = c.extra["contract_for"]({"renormalize": True})
    assert renorm.mean_scope == "none" and renorm.output_mean is None and renorm.output_variance is None
    assert c.extra["contract_for"]({}) is c and c.mean_scope == "elementwise"
    text = " ".join(c.notes)
    assert "NOT expectation preserving" in text and "42929" in text
    (x,) = c.probe_inputs((1, 1, 1, 4), np.random.default_rng(0))
    dropped = np.array([[[[True, False, False, True]]]])
    kept = c.kept_value((x,), {"p": 0.5, "renormalize": True}, dropped)
    np.testing.assert_allclose(kept[~dropped], x[~dropped] / x[~dropped].sum())


def test_attention_p_one_gives_zeros_with_finite_gradients():
    for renorm in (False, True):
        layer = AttentionDropout(p=1.0, renormalize=renorm, seed=0)
        y = layer.forward(np.full((2, 2, 3, 3), 1 / 3))
        assert np.all(y == 0)
        assert np.all(np.isfinite(layer.backward(np.ones((2, 2, 3, 3)))))


# -- embedding / word-type / variational ---------------------------------------------------

@given(shape=shapes3, dtype=dtypes, p=probs, seed=seeds)
def test_embedding_dropout_drops_whole_token_vectors(shape, dtype, p, seed):
    x = positive(shape, seed, dtype)
    layer = EmbeddingDropout(p=p, seed=seed)
    y = layer.forward(x)
    keep = expected_keep(layer, shape, seed)
    assert layer.mask_shape(shape) == shape[:2] + (1,)
    np.testing.assert_array_equal(y, np.where(keep, inverted(x, p, dtype), dtype(0)))
    assert constant_along(y == 0, (2,))


@given(vocab=st.integers(1, 8), dim=dims, p=probs, seed=seeds, dtype=dtypes)
def test_word_embedding_dropout_shares_the_mask_of_a_word_type(vocab, dim, p, seed, dtype):
    w = positive((vocab, dim), seed, dtype)
    layer = WordEmbeddingDropout(p=p, seed=seed)
    wd = layer.forward(w)
    keep = expected_keep(layer, w.shape, seed)
    np.testing.assert_array_equal(wd, np.where(keep, inverted(w, p, dtype), dtype(0)))
    ids = np.random.default_rng(seed).integers(0, vocab, size=(3, 6))
    ids[:, -1] = ids[0, 0]                      # the same word in several positions and samples
    emb = layer.lookup(ids)
    assert emb.shape == (3, 6, dim) and emb.dtype == dtype
    np.testing.assert_array_equal(emb, wd[ids])
    same = emb[ids == ids[0, 0]]
    assert np.all(same == same[0])              # identical vectors, hence identical masks
    g = np.ones((3, 6, dim))
    grad_w = layer.lookup_backward(g)
    counts = np.bincount(ids.ravel(), minlength=vocab)[:, None]
    np.testing.assert_allclose(grad_w, np.where(keep, counts * (1 / (1 - p) if p < 1 else 0), 0), rtol=2e-3)


def test_word_embedding_lookup_errors():
    layer = WordEmbeddingDropout(p=0.5, seed=0)
    with pytest.raises(InvalidArgument, match="before forward"):
        layer.lookup(np.array([0]))
    layer.forward(np.ones((4, 2)))
    with pytest.raises(InvalidArgument, match=r"should be in \[0, 3\]"):
        layer.lookup(np.array([[0, 4]]))
    with pytest.raises(InvalidArgument, match="integer"):
        layer.lookup(np.array([0.0]))
    with pytest.raises(InvalidArgument, match="before lookup"):
        layer.lookup_backward(np.ones((1, 2)))
    with pytest.raises(InvalidArgument, match=r"\(V, D\)"):
        layer.forward(np.ones((2, 3, 4)))


@given(shape=shapes3, dtype=dtypes, p=probs, seed=seeds, batch_first=st.booleans())
def test_variational_mask_is_identical_across_time(shape, dtype, p, seed, batch_first):
    x = positive(shape, seed, dtype)
    layer = VariationalDropout(p=p, batch_first=batch_first, seed=seed)
    y = layer.forward(x)
    time_axis = 1 if batch_first else 0
    assert layer.contract.shared_axes(layer.params, shape) == (time_axis,)
    keep = expected_keep(layer, shape, seed)
    np.testing.assert_array_equal(y, np.where(keep, inverted(x, p, dtype), dtype(0)))
    assert constant_along(y == 0, (time_axis,))


def test_variational_dropout_varies_over_samples_and_features():
    y = VariationalDropout(p=0.5, seed=1).forward(np.ones((16, 5, 16)))
    first_step = y[:, 0, :] == 0
    assert 0.3 < first_step.mean() < 0.7 and not constant_along(first_step, (0,))
    assert not constant_along(first_step, (1,))
    with pytest.raises(InvalidArgument, match=r"\(N, T, H\)"):
        VariationalDropout(p=0.5).forward(np.ones((4, 4)))


# -- zoneout -------------------------------------------------------------------------------

@given(shape=st.lists(dims, min_size=1, max_size=3).map(tuple), dtype=dtypes, p=probs, seed=seeds)
def test_zoneout_never_scales_and_zones_with_probability_p(shape, dtype, p, seed):
    h_prev, h_new = get_contract("zoneout").probe_inputs(shape, np.random.default_rng(seed), dtype)
    a, b = h_prev.astype(np.float64), h_new.astype(np.float64)
    assert np.all(a != 0) and np.all(b != 0)
    assert np.all(np.abs(a - b) >= 0.49 * np.maximum(np.abs(a), np.abs(b)))  # far apart everywhere
    layer = Zoneout(p=p, seed=seed)
    y = layer.forward(h_prev, h_new)
    assert y.dtype == dtype
    zone = np.random.default_rng(seed).random(shape) < p if p > 0 else np.zeros(shape, bool)
    np.testing.assert_array_equal(y, np.where(zone, h_prev, h_new))   # exact values: no scaling
    d_prev, d_new = layer.backward(np.full(shape, 3.0, dtype))
    np.testing.assert_array_equal(d_prev, np.where(zone, 3.0, 0.0))
    np.testing.assert_array_equal(d_new, np.where(zone, 0.0, 3.0))


@given(dtype=dtypes, p=probs, seed=seeds)
def test_zoneout_eval_is_the_expectation_and_edges_are_exact(dtype, p, seed):
    c = get_contract("zoneout")
    h_prev, h_new = c.probe_inputs((4, 5), np.random.default_rng(seed), dtype)
    layer = Zoneout(p=p, seed=seed).eval()
    y = layer.forward(h_prev, h_new)
    np.testing.assert_allclose(y.astype(np.float64), c.eval_output((h_prev, h_new), layer.params),
                               rtol=4e-3, atol=4e-3)
    np.testing.assert_allclose(c.eval_output((h_prev, h_new), layer.params),
                               c.output_mean((h_prev, h_new), layer.params))
    d_prev, d_new = layer.backward(np.ones((4, 5), dtype))
    np.testing.assert_allclose(d_prev.astype(np.float64) + d_new, 1.0, rtol=2e-3)
    assert Zoneout(p=0.0).forward(h_prev, h_new).tobytes() == h_new.tobytes()
    assert Zoneout(p=1.0, seed=seed).forward(h_prev, h_new).tobytes() == h_prev.tobytes()
    assert Zoneout(p=1.0).eval().forward(h_prev, h_new).tobytes() == h_prev.tobytes()


def test_zoneout_contract_moments_and_monte_carlo():
    c = get_contract("zoneout")
    assert not c.multiplicative and c.structure == "elementwise"
    h_prev, h_new = np.full((20000,), 1.0), np.full((20000,), -1.0)
    params = c.validate_params(p=0.3)
    np.testing.assert_allclose(c.output_mean((h_prev, h_new), params), 0.3 - 0.7)
    np.testing.assert_allclose(c.output_variance((h_prev, h_new), params), 0.21 * 4)
    y = Zoneout(p=0.3, seed=2).forward(h_prev, h_new)
    assert abs(y.mean() + 0.4) < 5 * np.sqrt(0.84 / 20000)


def test_zoneout_rejects_mismatched_inputs():
    with pytest.raises(InvalidArgument, match="should match h_prev"):
        Zoneout(p=0.5).forward(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(InvalidArgument, match="should be 2"):
        Zoneout(p=0.5).forward(np.ones((2, 3)))
    with pytest.raises(InvalidArgument, match="should be"):
        Zoneout(p=1.5)
