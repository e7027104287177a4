"""The pytest plugin, driven through pytester."""
from __future__ import annotations

import sys

pytest_plugins = ["pytester"]


def test_fixture_passes_a_good_layer_and_fails_a_broken_one(pytester):
    pytester.makepyfile(test_layers='''
        import pytest
        from dropverify.variants import variant_class
        Dropout = variant_class("dropout")

        class Sticky(Dropout):
            def draw_keep(self, shape):
                import numpy as np
                return np.random.default_rng(0).random(self.mask_shape(shape)) >= self.p

        @pytest.mark.dropverify(seed=3, max_calls=400)
        def test_good(dropverify):
            dropverify(lambda p: Dropout(p=p), "dropout", {"p": 0.2}, shape=(16, 8, 4, 4))

        @pytest.mark.dropverify(seed=3, max_calls=400)
        def test_sticky(dropverify):
            dropverify(lambda p: Sticky(p=p), "dropout", {"p": 0.2}, shape=(16, 8, 4, 4))

        @pytest.mark.dropverify(colour="red")
        def test_bad_marker(dropverify):
            pass
    ''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1, errors=1)
    result.stdout.fnmatch_lines(["*FAIL masks_fresh_across_calls_by_fisher: identical masks (lag 1*",
                                 "*dropverify*", "2 run(s)*FAIL*PASS*"])


def test_plugin_import_is_light():
    import subprocess
    code = "import dropverify.pytest_plugin, sys; print('numpy' in sys.modules, 'scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[1] == "False"
