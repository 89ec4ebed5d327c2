"""UCUM conversions: the boundaries of the seed trial and the units labs really send."""

from __future__ import annotations

import pytest

from connector.units import UnitError, convert, is_known_unit, normalize_unit, round_sig

BILIRUBIN = 584.66
CREATININE = 113.12


@pytest.mark.parametrize("value, source, target, expected", [
    (8.0, "g/dL", "g/L", 80.0),
    (7.9, "g/dL", "g/L", 79.0),
    (1000, "/uL", "10*9/L", 1.0),
    (999, "/uL", "10*9/L", 0.999),
    (1000, "/mm3", "10*9/L", 1.0),
    (80, "10*3/uL", "10*9/L", 80.0),
    (80, "10*3/mm3", "10*9/L", 80.0),
    (1.0, "10*9/L", "/uL", 1000.0),
    (10, "mCi", "MBq", 370.0),
    (600, "mCi", "MBq", 22200.0),
    (22.2, "GBq", "MBq", 22200.0),
    (154, "[lb_av]", "kg", 154 * 0.45359237),
    (1.2, "mg/dL", "mg/L", 12.0),
])
def test_plain_conversions_are_exact_at_boundaries(value, source, target, expected):
    assert convert(value, source, target) == pytest.approx(expected, abs=1e-9)


def test_boundary_values_have_no_float_noise():
    # 0.1 * 3 style noise must not flip >= comparisons
    assert convert(1000, "/uL", "10*9/L") == 1.0
    assert convert(8.0, "g/dL", "g/L") == 80.0
    assert convert(0.3, "g/L", "g/L") == 0.3


@pytest.mark.parametrize("value, source, target, expected", [
    (17.1, "umol/L", "mg/dL", 17.1 * BILIRUBIN / 10_000),
    (1.0, "mg/dL", "umol/L", 10_000 / BILIRUBIN),
])
def test_bilirubin_mass_molar(value, source, target, expected):
    assert convert(value, source, target, BILIRUBIN) == pytest.approx(expected, rel=1e-9)


def test_creatinine_mass_molar():
    assert convert(88.4, "umol/L", "mg/dL", CREATININE) == pytest.approx(1.0, rel=1e-3)
    assert convert(1.0, "mg/dL", "umol/L", CREATININE) == pytest.approx(88.40, rel=1e-3)


def test_molar_conversion_needs_a_molar_mass():
    with pytest.raises(UnitError):
        convert(17.1, "umol/L", "mg/dL")


@pytest.mark.parametrize("spelling, ucum", [
    ("K/uL", "10*3/uL"),
    ("x10^9/L", "10*9/L"),
    ("10^3/uL", "10*3/uL"),
    ("x10E9/L", "10*9/L"),
    ("cells/uL", "/uL"),
    ("µmol/L", "umol/L"),
])
def test_lab_spellings_are_normalized(spelling, ucum):
    assert normalize_unit(spelling) == ucum
    assert convert(2, spelling, ucum) == 2


def test_k_per_ul_is_thousands_not_kelvin():
    assert convert(80, "K/uL", "10*9/L") == 80.0


@pytest.mark.parametrize("source, target", [
    ("mg", "g/L"),                 # different dimensions
    ("g/dq", "g/L"),               # not UCUM
    ("mL/min/{1.73_m2}", "mL/min"),  # body-surface normalised rate is not a plain rate
    ("g/L", None),
])
def test_unconvertible_units_raise(source, target):
    with pytest.raises(UnitError):
        convert(1, source, target)


def test_count_annotations_are_ignored_but_others_must_match():
    assert convert(1500, "{cells}/uL", "10*9/L") == 1.5
    assert convert(60, "mL/min/{1.73_m2}", "mL/min/{1.73_m2}") == 60
    assert convert(2, None, None) == 2
    assert convert(2, "{score}", None) == 2


def test_known_unit_check():
    assert is_known_unit("10*9/L") and is_known_unit("mL/min")
    assert not is_known_unit("g/dq")


def test_round_sig():
    assert round_sig(0.9999999999999999) == 1.0
    assert round_sig(123456.789012345678) == 123456.789012
    assert round_sig(0) == 0
