"""The quality report machinery runs end to end on a tiny budget (the real run is `make quality`)."""
from __future__ import annotations

import pytest

from dropverify.quality import FAMILIES, _plots, calibrate, false_passes, power_curve, quality_markdown


def test_quality_pipeline_on_a_tiny_budget(tmp_path):
    calib = [calibrate(FAMILIES[0], seeds=6, base_seed=1)]
    assert calib[0]["results"] == 6 and calib[0]["fails_at_default"] == 0
    assert all(0 <= r["rate"] <= 1 for r in calib[0]["rates"].values())
    power = [power_curve("drop_rate_matches_by_binomial", seeds=2, base_seed=3)]
    assert power[0]["measured"][0] == 0.0 and power[0]["measured"][-1] == 1.0  # 0 and 0.02 rate error
    assert all(0 <= t <= 1 for t in power[0]["theory"])
    images = _plots(tmp_path, calib, power)
    kills = [{"name": "m", "variant": "dropout", "bug_class": "c", "source": "s", "expected": ["x"],
              "verdicts": {"x": "FAIL"}, "killed": True}]
    fpass = false_passes(seeds=2, base_seed=5, alphas=(0.05,))
    assert len(fpass) >= 3 and all(r["seeds"] == 2 and sum(r["verdicts"].values()) == 2 for r in fpass)
    assert all(r["deviation"] > r["margin"] for r in fpass)
    md = quality_markdown(kills, calib, power, images, seed=1, fpass=fpass)
    assert "Kill rate: **1 / 1**" in md and "drop_rate_matches_by_binomial" in md
    assert "False passes against faults that strike whole calls" in md and "StaleMask" in md
    assert (tmp_path / images["calibration"]).exists() and (tmp_path / images["power"]).exists()


@pytest.mark.slow  # ~50 s of CPU (three parts of the pipeline, each twice): `make test-slow`, run by .ci/run
def test_worker_processes_change_no_number():
    """Every part of `make quality` splits its seeds over worker processes; the numbers are the
    same with one process and with two (odd seed counts: the chunks differ in length)."""
    one = calibrate(FAMILIES[0], seeds=3, base_seed=11)
    two = calibrate(FAMILIES[0], seeds=3, base_seed=11, workers=2)
    assert sorted(one["p_values"]) == sorted(two["p_values"]) and one["fails_at_default"] == two["fails_at_default"]
    assert one["rates"] == two["rates"]
    assert power_curve("drop_rate_matches_by_binomial", seeds=3, base_seed=13) == \
        power_curve("drop_rate_matches_by_binomial", seeds=3, base_seed=13, workers=2)
    assert false_passes(seeds=3, base_seed=17, alphas=(0.05,)) == \
        false_passes(seeds=3, base_seed=17, alphas=(0.05,), workers=2)
