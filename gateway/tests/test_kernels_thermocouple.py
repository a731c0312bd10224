"""Thermocouple kernel against NIST ITS-90 (Monograph 175) published tables.

The table EMFs below are typed from the NIST ITS-90 thermocouple tables
(mV, rounded there to 1 µV); the inverse-polynomial errors are the ones NIST
states for each EMF range.  Nothing here is computed from the code under test.
"""

from array import array

import pytest

from smemet.gateway import quality as codes

# °C -> mV, NIST ITS-90 tables (reference junction at 0 °C)
NIST_TABLES = {
    "K": {
        -200: -5.891, -100: -3.554, -50: -1.889, 0: 0.000, 25: 1.000, 100: 4.096,
        200: 8.138, 300: 12.209, 400: 16.397, 500: 20.644, 600: 24.905, 700: 29.129,
        800: 33.275, 900: 37.326, 1000: 41.276, 1100: 45.119, 1200: 48.838,
        1300: 52.410, 1372: 54.886,
    },
    "S": {
        0: 0.000, 100: 0.646, 200: 1.441, 300: 2.323, 400: 3.259, 500: 4.233,
        600: 5.239, 700: 6.275, 800: 7.345, 900: 8.449, 1000: 9.587, 1100: 10.757,
        1200: 11.951, 1300: 13.159, 1400: 14.373, 1500: 15.582, 1600: 16.777,
        1700: 17.947, 1768: 18.693,
    },
    "R": {
        -50: -0.226, 0: 0.000, 100: 0.647, 200: 1.469, 300: 2.401, 400: 3.408,
        500: 4.471, 600: 5.583, 700: 6.743, 800: 7.950, 900: 9.205, 1000: 10.506,
        1100: 11.850, 1200: 13.228, 1300: 14.629, 1400: 16.040, 1500: 17.451,
        1600: 18.849, 1700: 20.222, 1768: 21.101,
    },
    "B": {
        250: 0.291, 300: 0.431, 400: 0.787, 500: 1.242, 600: 1.792, 700: 2.431,
        800: 3.154, 900: 3.957, 1000: 4.834, 1100: 5.780, 1200: 6.786, 1300: 7.848,
        1400: 8.956, 1500: 10.099, 1600: 11.263, 1700: 12.433, 1800: 13.591,
        1820: 13.820,
    },
    "N": {
        -200: -3.990, -100: -2.407, 0: 0.000, 100: 2.774, 200: 5.913, 300: 9.341,
        400: 12.974, 500: 16.748, 600: 20.613, 700: 24.527, 800: 28.455, 900: 32.371,
        1000: 36.256, 1100: 40.087, 1200: 43.846, 1300: 47.513,
    },
    "J": {
        -200: -7.890, -100: -4.633, 0: 0.000, 100: 5.269, 200: 10.779, 300: 16.327,
        400: 21.848, 500: 27.393, 600: 33.102, 700: 39.132, 760: 42.919, 800: 45.494,
        900: 51.877, 1000: 57.953, 1100: 63.792, 1200: 69.553,
    },
    "E": {
        -200: -8.825, -100: -5.237, 0: 0.000, 100: 6.319, 200: 13.421, 300: 21.036,
        400: 28.946, 500: 37.005, 600: 45.093, 700: 53.112, 800: 61.017, 900: 68.787,
        1000: 76.373,
    },
    "T": {
        -200: -5.603, -100: -3.379, 0: 0.000, 100: 4.279, 200: 9.288, 300: 14.862,
        400: 20.872,
    },
}

# NIST inverse polynomials: (upper EMF of the range in mV, max |error| in °C).
# Where S and R ranges overlap, the lower range serves up to its upper end.
NIST_INVERSE_ERROR = {
    "K": ((0.0, 0.04), (20.644, 0.05), (54.886, 0.06)),
    "S": ((1.874, 0.02), (11.950, 0.01), (17.536, 0.0002), (18.693, 0.002)),
    "R": ((1.923, 0.02), (13.228, 0.005), (19.739, 0.001), (21.103, 0.002)),
    "B": ((2.431, 0.03), (13.820, 0.02)),
    "N": ((0.0, 0.03), (20.613, 0.03), (47.513, 0.04)),
    "J": ((0.0, 0.05), (42.919, 0.04), (69.553, 0.04)),
    "E": ((0.0, 0.03), (76.373, 0.02)),
    "T": ((0.0, 0.04), (20.872, 0.03)),
}

HALF_TABLE_DIGIT_MV = 0.0005  # the tables round EMF to 1 µV


def stated_error(tc_type, emf):
    for upper, error in NIST_INVERSE_ERROR[tc_type]:
        if emf <= upper:
            return error
    raise AssertionError(f"{emf} mV beyond the NIST type {tc_type} ranges")


def slowest_seebeck(tc_type, celsius):
    """A lower bound of dE/dt (mV/°C) at ``celsius``, from the neighbouring
    table intervals, so the table's 0.5 µV rounding is worth at most
    0.0005 / this °C.  At the ends of a table only one interval exists and the
    curve bends away from it, so its slope is halved to stay a bound."""
    table = NIST_TABLES[tc_type]
    temps = sorted(table)
    k = temps.index(celsius)
    neighbours = [(temps[j], temps[j + 1]) for j in (k - 1, k) if 0 <= j < len(temps) - 1]
    slope = min((table[b] - table[a]) / (b - a) for a, b in neighbours)
    return slope / 2 if len(neighbours) == 1 else slope


def _table_points():
    for tc_type, table in NIST_TABLES.items():
        for celsius, emf in table.items():
            yield pytest.param(tc_type, celsius, emf, id=f"{tc_type}{celsius}")


TABLE_POINTS = list(_table_points())


def convert(impl, tc_type, emfs, cold_junction=0.0, per_sample=None, quality=None):
    n = len(emfs)
    values = array("d", emfs)
    q = bytearray(quality) if quality is not None else bytearray(n)
    r = bytearray(n)
    kernel = impl.Thermocouple(tc_type, cold_junction)
    cj = array("d", per_sample) if per_sample is not None else None
    assert kernel.process(array("d", range(n)), values, q, r, cj) == n
    return list(values), list(q), [codes.REASON_NAMES[x] for x in r]


@pytest.mark.parametrize("tc_type, celsius, emf", TABLE_POINTS)
def test_reference_function_reproduces_nist_table(impl, tc_type, celsius, emf):
    assert impl.celsius_to_emf(tc_type, celsius) == pytest.approx(emf, abs=HALF_TABLE_DIGIT_MV)


@pytest.mark.parametrize("tc_type, celsius, emf", TABLE_POINTS)
def test_inverse_within_stated_error_of_nist_table(impl, tc_type, celsius, emf):
    tolerance = stated_error(tc_type, emf) + HALF_TABLE_DIGIT_MV / slowest_seebeck(tc_type, celsius)
    values, quality, reasons = convert(impl, tc_type, [emf])
    assert quality == [codes.GOOD], reasons
    assert values[0] == pytest.approx(celsius, abs=tolerance)


@pytest.mark.parametrize("tc_type", ["K", "S", "R", "B", "N", "J", "E", "T"])
def test_inverse_of_reference_within_stated_error_across_range(impl, tc_type):
    # The stated error is the inverse polynomial's deviation from the
    # reference function, which the table test above pins to NIST.
    # the inverse polynomials' published ranges (N, E, T from -200 °C; J from -210 °C)
    low = {"K": -200.0, "S": -49.0, "R": -50.0, "B": 250.0, "N": -200.0, "J": -210.0, "E": -200.0, "T": -200.0}[tc_type]
    high = {"K": 1372.0, "S": 1768.1, "R": 1768.1, "B": 1820.0, "N": 1300.0, "J": 1200.0, "E": 1000.0, "T": 400.0}[tc_type]
    temps = [low + (high - low) * k / 400 for k in range(401)]
    emfs = [impl.celsius_to_emf(tc_type, t) for t in temps]
    values, quality, _ = convert(impl, tc_type, emfs)
    for t, emf, got, q in zip(temps, emfs, values, quality):
        if q == codes.BAD:  # the published EMF bounds are rounded to 1 µV
            assert t in (low, high)
            continue
        assert got == pytest.approx(t, abs=stated_error(tc_type, emf) + 1e-9), (t, emf)


def test_constant_cold_junction_is_added_as_emf(impl):
    # hot junction 500 °C, cold junction 25 °C: the meter sees E(500) - E(25)
    values, quality, _ = convert(impl, "K", [20.644 - 1.000], cold_junction=25.0)
    assert quality == [codes.GOOD]
    assert values[0] == pytest.approx(500.0, abs=0.05 + 0.0005 / 0.040)


def test_per_sample_cold_junction(impl):
    # type S, hot 1200 °C, with the cold junction at 0, 100 and 200 °C
    measured = [11.951 - 0.000, 11.951 - 0.646, 11.951 - 1.441]
    values, quality, _ = convert(impl, "S", measured, cold_junction=999.0,
                                 per_sample=[0.0, 100.0, 200.0])
    assert quality == [codes.GOOD] * 3
    assert values == pytest.approx([1200.0] * 3, abs=0.01 + 3 * 0.0005 / 0.006)


@pytest.mark.parametrize("tc_type, emf", [("K", 54.9), ("K", -6.0), ("S", 18.7),
                                          ("R", 21.2), ("B", 0.178), ("B", 14.0)])
def test_emf_outside_inverse_range_is_bad(impl, tc_type, emf):
    values, quality, reasons = convert(impl, tc_type, [emf])
    assert quality == [codes.BAD]
    assert reasons == ["emf-out-of-range"]
    assert values == [emf]  # raw reading kept for diagnosis


def test_cold_junction_outside_reference_range_is_bad(impl):
    values, quality, reasons = convert(impl, "K", [1.0, 1.0, 1.0], per_sample=[25.0, 1400.0, float("nan")])
    assert quality == [codes.GOOD, codes.BAD, codes.BAD]
    assert reasons == ["", "cj-out-of-range", "cj-out-of-range"]


def test_incoming_bad_sample_untouched(impl):
    values, quality, reasons = convert(impl, "K", [4.096, 4.096],
                                       quality=[codes.BAD, codes.GOOD])
    assert values[0] == 4.096 and quality[0] == codes.BAD
    assert values[1] == pytest.approx(100.0, abs=0.06)


def test_scalar_conversions_reject_out_of_range(impl):
    with pytest.raises(ValueError, match="outside"):
        impl.celsius_to_emf("B", -10.0)
    with pytest.raises(ValueError, match="outside"):
        impl.emf_to_celsius("R", 30.0)


def test_per_sample_cold_junction_length_checked(impl):
    kernel = impl.Thermocouple("K", 0.0)
    with pytest.raises(ValueError, match="cold_junction"):
        kernel.process(array("d", [0.0, 1.0]), array("d", [1.0, 2.0]),
                       bytearray(2), bytearray(2), array("d", [25.0]))
