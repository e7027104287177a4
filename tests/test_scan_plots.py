"""The scan's picture: per-site configured / received / measured rates and the depth schedules."""
from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

import dropverify  # noqa: E402
from dropverify import Settings  # noqa: E402
from dropverify.checks import rates  # noqa: E402
from dropverify.modelscan.plots import site_rows  # noqa: E402

from tests.test_scan import sm  # noqa: E402


@pytest.fixture(scope="module")
def report():
    return dropverify.scan(sm.rate_not_plumbed(), sm.example_input(), settings=Settings(max_calls=400),
                           checks=[rates.NAME])


def test_rows_show_configured_received_and_measured_rates(report):
    rows = {label: (conf, rec, meas, verdict) for label, conf, rec, meas, verdict in site_rows(report)}
    assert rows, "no site rows"
    measured = [(label, m) for label, (_, _, m, _) in rows.items() if m is not None]
    assert measured, "no site shows an in-situ measurement"
    for label, (est, lo, hi) in measured:
        assert lo <= est <= hi, label
    # the site whose configured rate is not plumbed: received differs from configured, and the row says FAIL
    wrong = [label for label, (conf, rec, _, verdict) in rows.items()
             if conf is not None and rec and any(abs(p - conf) > 1e-9 for p in rec)]
    assert wrong and all(rows[label][3] == "FAIL" for label in wrong)


def test_png_written_beside_the_markdown_and_linked(report, tmp_path):
    paths = report.write(tmp_path)
    png = tmp_path / "scan.png"
    assert png in paths and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](scan.png)" in (tmp_path / "scan.md").read_text()
