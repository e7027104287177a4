"""Memory layouts only where the probe's rank has them (issue 16, item 7): channels_last needs a
4-D or 5-D input, so a 2-D probe of a layer whose default probe is 4-D is checked on the other
layouts, never ERRORs on channels_last, and asking for channels_last on it is a usage error."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dropverify.errors import InvalidArgument
from dropverify.targets._base import check_layout_rank, layout_fits, layouts_for_rank


def test_layout_ranks():
    assert [layout_fits("channels_last", r) for r in range(1, 7)] == [False, False, False, True, True, False]
    assert [layout_fits("channels_last_3d", r) for r in range(1, 7)] == [False] * 4 + [True, False]
    assert all(layout_fits(lay, r) for lay in ("contiguous", "transposed", "strided") for r in range(1, 7))
    every = ("contiguous", "transposed", "strided", "channels_last")
    assert layouts_for_rank(every, 2) == ("contiguous", "transposed", "strided")
    assert layouts_for_rank(every, 4) == every
    with pytest.raises(InvalidArgument, match=r"layout='channels_last' needs a 4-D or 5-D input, but t is "
                                              r"probed with shape \(256, 128\) \(rank 2\)"):
        check_layout_rank("channels_last", (256, 128), "t")
    check_layout_rank("channels_last", (2, 3, 4, 5), "t")


def test_torch_dropout_on_a_2d_probe_checks_only_the_layouts_a_2d_input_has(tmp_path):
    """The issue's command: the values check ran channels_last on a (256, 128) probe -> ERROR."""
    pytest.importorskip("torch")
    junit, report = tmp_path / "j.xml", tmp_path / "r.md"
    proc = subprocess.run([sys.executable, "-m", "dropverify", "run", "torch:Dropout", "--param", "p=0.2",
                           "--shape", "256,128", "--check", "multiplier_values_exact", "--junit-xml", str(junit),
                           "--report", str(report), "--quiet"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = {r["check"]: r["verdict"] for r in json.loads(report.with_suffix(".json").read_text())["results"]}
    assert checks == {"multiplier_values_exact[contiguous]": "PASS", "multiplier_values_exact[transposed]": "PASS"}
    xml = junit.read_text()
    assert "channels_last" not in xml and "<error" not in xml


def test_4d_probe_still_checks_channels_last():
    pytest.importorskip("torch")
    import dropverify
    report = dropverify.verify("torch:Dropout", p=0.2, shape=(4, 3, 5, 6), checks=["multiplier_values_exact"])
    names = {r.check: r.verdict for r in report.run.all_results()}
    assert names.get("multiplier_values_exact[channels_last]") == "PASS", names


@pytest.mark.parametrize("call", [
    lambda v: v.verify("torch:Dropout", p=0.2, shape=(256, 128), layout="channels_last"),
    lambda v: v.verify(__import__("torch").nn.Dropout, "dropout", p=0.2, shape=(256, 128), layout="channels_last"),
])
def test_channels_last_on_a_2d_probe_is_refused_before_sampling(call, monkeypatch):
    pytest.importorskip("torch")
    import dropverify
    import dropverify.runner as runner
    monkeypatch.setattr(runner, "verify", lambda *a, **k: pytest.fail("sampling started"))
    with pytest.raises(InvalidArgument, match=r"layout='channels_last' needs a 4-D or 5-D input.*\(256, 128\)"):
        call(dropverify)


def test_sweep_layout_axis_follows_the_probe_rank():
    pytest.importorskip("torch")
    from dropverify.sweep.driver import build_space
    flat = build_space("torch:Dropout", None, {"shape": (256, 128)}).axis("layout").values
    assert "channels_last" not in flat and "transposed" in flat
    assert "channels_last" in build_space("torch:Dropout", None, {}).axis("layout").values
