"""Report figures: off-scale markers (pure logic), legends, failed exact checks, labelled maps."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dropverify import Settings, verify
from dropverify.checks import CheckResult
from dropverify.report import plots, write_target_report
from dropverify.report.plots import LIMIT, OffScale, place_on_scale
from dropverify.variants import variant_class

PNG = b"\x89PNG\r\n\x1a\n"


def test_inside_the_scale_nothing_is_marked():
    pl = place_on_scale(-0.5, 0.1, 0.7)
    assert (pl.lo, pl.est, pl.hi, pl.off) == (-0.5, 0.1, 0.7, ())


def test_estimate_beyond_is_marked_with_its_value_not_clipped_silently():
    pl = place_on_scale(9.0, 12.4, 15.1)
    assert (pl.lo, pl.est, pl.hi) == (LIMIT, LIMIT, LIMIT)
    assert pl.off == (OffScale(1, 12.4, "estimate"),)
    assert pl.off[0].label == "estimate 12.4 →"


def test_interval_end_beyond_is_marked_when_the_estimate_is_inside():
    pl = place_on_scale(-4.25, -2.0, 0.5)
    assert (pl.lo, pl.est, pl.hi) == (-LIMIT, -2.0, 0.5)
    assert pl.off == (OffScale(-1, -4.25, "CI"),)
    assert pl.off[0].label == "← CI -4.25"


def test_both_sides_and_the_boundary():
    pl = place_on_scale(-7.0, 0.0, 8.0)
    assert [(o.side, o.value, o.what) for o in pl.off] == [(-1, -7.0, "CI"), (1, 8.0, "CI")]
    assert place_on_scale(-3.0, 0.0, 3.0).off == ()  # exactly at the limit is on the scale
    assert place_on_scale(-1, 0, 1, limit=0.5).off == (OffScale(-1, -1.0, "CI"), OffScale(1, 1.0, "CI"))


def test_non_finite_values_are_not_drawn_and_infinite_ends_are_marked():
    pl = place_on_scale(-math.inf, 0.2, math.nan)
    assert pl.lo == -LIMIT and pl.hi is None and pl.off == (OffScale(-1, -math.inf, "CI"),)


def _stat(check, verdict, est, ci, expected=0.2, margin=0.01, mdd=0.005):
    return CheckResult(check=check, target="t", variant="dropout", verdict=verdict, text=f"{check} message", label="x",
                       statistical=True, estimate=est, ci=ci, expected=expected, margin=margin, mdd=mdd)


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_ci_figure_marks_off_scale_values_shows_failed_exact_checks_and_has_a_legend():
    results = [
        _stat("drop_rate_matches_by_binomial", "PASS", 0.201, (0.195, 0.207)),
        _stat("expectation_matches_by_t_test", "FAIL", 0.5, (0.45, 0.55)),  # 30 margins off
        _stat("masks_fresh_across_calls_by_fisher", "INCONCLUSIVE", 0.19, (0.15, 0.23)),  # CI to -5 / +3
        CheckResult(check="p_one_gives_zeros_with_finite_gradients", target="t", variant="dropout", verdict="FAIL",
                    text="p=1: non-finite outputs=12, but should be 0", label="x"),
        CheckResult(check="invalid_p_rejected", target="t", variant="dropout", verdict="PASS", text="ok"),
    ]
    fig = plots.ci_figure("title", results)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "drop_rate_matches_by_binomial", "expectation_matches_by_t_test", "masks_fresh_across_calls_by_fisher",
        "p_one_gives_zeros_with_finite_gradients"]  # the exact PASS is not drawn, the exact FAIL is
    texts = _texts(fig)
    assert "estimate 30 →" in texts
    assert "← CI -5" in texts
    assert "FAIL (exact): p=1: non-finite outputs=12, but should be 0" in texts
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["PASS: estimate and CI", "FAIL: estimate and CI", "INCONCLUSIVE: estimate and CI",
                      "± margin (certified band)", "± MDD (could be missed)",
                      "off-scale (beyond ±3 margins): value shown",
                      "FAIL / ERROR without an interval (exact or crashed check)"]
    assert ax.get_xlim() == (-LIMIT - 0.2, LIMIT + 0.2)
    for line in ax.get_lines():  # nothing is drawn outside the scale
        assert np.all(np.abs(np.asarray(line.get_xdata(), dtype=float)) <= LIMIT)
    import matplotlib.pyplot as plt
    plt.close(fig)
    assert plots.ci_plot("title", results).startswith(PNG)
    assert plots.ci_plot("nothing", [results[-1]]) is None


@pytest.fixture(scope="module")
def small_runs():
    Dropout = variant_class("dropout")

    class Sticky(Dropout):
        def draw_keep(self, shape):
            return np.random.default_rng(0).random(self.mask_shape(shape)) >= self.p

    sticky = verify(lambda p: Sticky(p=p), "dropout", p=0.2, shape=(16, 8, 4, 4), seed=5,
                    settings=Settings(max_calls=400),
                    checks=["drop_rate_matches_by_binomial", "masks_fresh_across_calls_by_fisher",
                            "masks_never_repeat_by_hash"])
    block = verify("numpy:dropblock_2d", p=0.1, seed=5, settings=Settings(max_calls=300),
                   checks=["drop_map_matches_theory_by_binomial", "dropped_set_is_union_of_blocks"])
    return sticky, block


def test_figures_of_a_small_run_are_written(small_runs, tmp_path):
    sticky, block = small_runs
    assert not sticky.ok and block.ok
    texts = _texts(plots.ci_figure("sticky", sticky.targets[0].results))
    assert any(t.startswith("FAIL (exact): call 1 repeats call 0's mask") for t in texts)
    assert any(t.startswith("estimate ") and t.endswith("→") for t in texts)  # relative risk 4.15 / 0.2 margins
    for report, name in ((sticky, "sticky.md"), (block, "block.md")):
        write_target_report(report.run, report.targets[0], tmp_path / name)
    assert (tmp_path / "img" / "sticky-ci.png").read_bytes().startswith(PNG)
    assert (tmp_path / "img" / "block-drop_map_matches_theory_by_binomial.png").read_bytes().startswith(PNG)
    assert "img/sticky-ci.png" in (tmp_path / "sticky.md").read_text()


def test_dropblock_map_axes_and_colour_bars_are_labelled(small_runs):
    _, block = small_runs
    result = next(r for r in block.results if r.check == "drop_map_matches_theory_by_binomial")
    fig = plots.map_figure("map", result)
    images, bars = fig.axes[:3], fig.axes[3:]
    assert [ax.get_xlabel() for ax in images] == ["column (W)"] * 3
    assert [ax.get_ylabel() for ax in images] == ["row (H)"] * 3
    assert [ax.get_ylabel() for ax in bars] == ["drop probability", "drop probability",
                                                "difference in drop probability"]
    assert "PASS" in fig._suptitle.get_text()
    assert plots.map_plot("map", result).startswith(PNG)
    assert plots.map_plot("map", block.results[-1]) is None
