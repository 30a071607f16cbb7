"""A street gauge over dry ground reads the ground for days: that is not a stuck sensor."""

import numpy as np

from floodwatch.settings import load_settings
from floodwatch.ingest.qc import FAIL, PASS, limits_for, run_tests


def _flat_flags(level_m: float) -> np.ndarray:
    street = load_settings().station("LP-W06")  # dry_level_m 1.40
    t_s = np.arange(0.0, 12 * 3600.0, 600.0)
    values = level_m + np.where(np.arange(t_s.size) % 2, 0.001, -0.001)
    _, tests = run_tests(values, t_s, now_s=t_s[-1], limits=limits_for(street))
    return tests["flat_line"]


def test_dry_street_is_not_flagged_flat():
    assert (_flat_flags(1.40)[1:] == PASS).all()


def test_street_stuck_above_its_ground_still_fails_the_flat_line_test():
    assert _flat_flags(1.70)[-1] == FAIL
