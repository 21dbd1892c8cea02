"""cfviewer.formatting.number: the one number formatter of reports and captions."""

from __future__ import annotations

import numpy as np

from cfviewer.formatting import number


def test_number_fixed_decimals_and_missing_values():
    assert number(0.12345) == "0.123" and number(0.12345, 2) == "0.12" and number(771.98, 0) == "772"
    assert number(np.float32(0.5), 1) == "0.5" and number(3) == "3.000"
    assert number(None) == "n/a" and number(float("nan")) == "n/a" and number(float("inf"), missing="—") == "—"
    assert number("pending") == "pending" and number([1]) == "[1]"


def test_frame_captions_use_two_decimals_and_n_a():
    from cfviewer.explain import render

    assert render.number is number
    assert number(0.375, 2) == "0.38" and number(None, 2) == "n/a"
