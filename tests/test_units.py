"""One unit per quantity on every screen."""

from posttrainbench import units


def test_scores_are_percent_with_one_decimal():
    assert units.percent(0.05) == "5.0%" and units.percent(0.0512, sign=False) == "5.1"
    assert units.percent(None) == units.MISSING


def test_times_are_h_mm_ss_with_the_share_of_the_budget():
    assert units.duration(5590.4) == "1:33:10" and units.duration(59.6) == "0:01:00"
    assert units.budget_share(5590, 10.0) == "1:33:10 (16% of 10 h)"
    assert units.budget_share(5590, None) == "1:33:10" and units.budget_share(None, 1) == units.MISSING


def test_metrics_read_as_what_they_are():
    assert units.metric("accuracy", 0.25) == "25.0%" and units.metric("stderr", 0.0123) == "1.2%"
    assert units.metric("n_samples", 164.0) == "164" and units.metric("tokens", 12345.0) == "12,345"
    assert units.metric("mean_len", 3.14159) == "3.142"
