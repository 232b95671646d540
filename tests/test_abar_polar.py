"""Polar Abar (golden/abar_polar.py, quant.abar.form = "polar").

* the exact decode against an independent library (mpmath at 60 digits) and the Fraction rounding
  reference of test_fixedpoint, in every rounding mode;
* the encoding's invariants (mantissa ranges, finest exponent, |Abar| < 1 by construction);
* config validation (field-named errors) and the golden model: a polar layer runs the integer
  model with the decoded Abar, and the RTL regression covers a polar config (regression_configs).
"""

from __future__ import annotations

import random
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from test_fixedpoint import ref_round

from ssmgen.golden.abar_polar import decode_mode, decode_polar, encode_polar
from ssmgen.golden.quantize import load_model
from ssmgen.spec.config import parse_config
from ssmgen.spec.errors import ConfigError
from ssmgen.spec.formats import Rounding
from ssmgen.spec.quantized import PolarCodes


def reference_decode(rho_mant, rho_exp, theta_mant, theta_exp, frac, rounding):
    """(re, im) with mpmath's cos/sin at 60 digits, rounded by the Fraction reference."""
    with mpmath.workdps(60):
        radius = 1 - mpmath.mpf(rho_mant) / 2 ** rho_exp
        theta = mpmath.mpf(theta_mant) / 2 ** theta_exp
        out = []
        for value in (radius * mpmath.cos(theta), radius * mpmath.sin(theta)):
            sign, mantissa, exponent, _ = value._mpf_    # exact: (-1)**sign * man * 2**exp
            exact = (-1) ** sign * Fraction(int(mantissa)) * Fraction(2) ** int(exponent)
            out.append(ref_round(exact * 2 ** frac, rounding))
    return tuple(out)


@pytest.mark.parametrize("rounding", list(Rounding))
def test_decode_matches_mpmath(rounding):
    rng = random.Random(f"polar-{rounding.value}")
    for _ in range(300):
        frac = rng.randint(3, 23)
        rho_bits, theta_bits = rng.randint(1, 8), rng.randint(3, 10)
        rho_exp = rng.randint(0, frac)            # rho = mant * 2**-exp in (0, 1]
        codes = (rng.randint(1, min((1 << rho_bits) - 1, 1 << rho_exp)), rho_exp,
                 rng.randint(-(1 << (theta_bits - 1)), (1 << (theta_bits - 1)) - 1),
                 rng.randint(0, frac))
        assert decode_mode(*codes, frac, rounding) == reference_decode(*codes, frac, rounding), codes


def test_decode_exact_cases():
    # theta = 0: (1 - rho, 0) exactly; rho = 1: the pole at the origin
    assert decode_mode(3, 4, 0, 2, 8, Rounding.FLOOR) == ((16 - 3) << 4, 0)
    assert decode_mode(1, 0, 5, 3, 8, Rounding.HALF_EVEN) == (0, 0)


def test_encode_invariants():
    rng = np.random.default_rng(7)
    radius = np.concatenate([1 - 10 ** rng.uniform(-7, 0, 400), [1.0, 0.0, 0.999999999]])
    abar = radius * np.exp(1j * rng.uniform(-np.pi, np.pi, radius.size))
    abar[-1] = -0.9999999      # theta = pi
    for rho_bits, theta_bits, frac in ((4, 6, 15), (1, 3, 7), (8, 8, 23)):
        codes = encode_polar(abar, rho_bits=rho_bits, theta_bits=theta_bits, frac=frac,
                             rounding=Rounding.HALF_EVEN)
        assert np.all((codes.rho_mant >= 1) & (codes.rho_mant < 1 << rho_bits))
        half = 1 << (theta_bits - 1)
        assert np.all((codes.theta_mant >= -half) & (codes.theta_mant < half))
        for exp in (codes.rho_exp, codes.theta_exp):
            assert np.all((exp >= 0) & (exp <= frac))
        # the finest exponent: one step finer would not fit (unless already at frac)
        finer = codes.rho_exp < frac
        rho = 1 - np.abs(abar)
        assert np.all(np.round(rho[finer] * 2.0 ** (codes.rho_exp[finer] + 1)) > (1 << rho_bits) - 1)
        re, im = decode_polar(codes, frac, Rounding.HALF_EVEN)
        assert np.all(re.astype(object) ** 2 + im.astype(object) ** 2 < 1 << (2 * frac))
        # the stored radius is within half a mantissa step of the float radius (or clamped up)
        step = np.ldexp(1.0, -codes.rho_exp)
        stored = codes.rho_mant * step
        assert np.all((np.abs(stored - rho) <= step / 2 + 1e-12) | ((codes.rho_mant == 1) & (rho < stored)))


def test_slow_poles_keep_their_radius():
    """Why the form exists: |Abar| = 0.995 is out of reach of fixed<4,1> but 4 radius bits with
    an exponent hold it to 1/16 of 1 - |Abar|."""
    abar = np.array([0.995 * np.exp(0.3j), 0.9995 * np.exp(-0.05j)])
    codes = encode_polar(abar, rho_bits=4, theta_bits=6, frac=15, rounding=Rounding.HALF_EVEN)
    re, im = decode_polar(codes, 15, Rounding.HALF_EVEN)
    decoded = (re + 1j * im) / 2 ** 15
    assert np.all(np.abs((1 - np.abs(decoded)) / (1 - np.abs(abar)) - 1) < 1 / 16 + 0.01)
    assert np.all(np.abs(np.angle(decoded) - np.angle(abar)) < 0.3 / 32 + 1e-3)


def polar_config(**abar):
    abar = {"format": "fixed<16,1>", "form": "polar", "rho_bits": 4, "theta_bits": 6, **abar}
    return {
        "model": {"kind": "s4d", "channels": 2, "state_size": 8},
        "weights": {"source": "random", "seed": 3},
        "quant": {"abar": abar, "bbar": {"format": "fixed<8,0>"}, "c": {"format": "fixed<8,2>"},
                  "d": {"format": "fixed<8,2>"}, "input": {"format": "fixed<8,2>"},
                  "state": {"format": "fixed<12,4>"}, "output": {"format": "fixed<10,4>"},
                  "defaults": {"rounding": "half_even", "overflow": "saturate"}},
    }


def test_golden_model_uses_the_decoded_poles():
    config = parse_config(polar_config())
    model = load_model(config)
    assert isinstance(model.abar_polar, PolarCodes)
    re, im = decode_polar(model.abar_polar, 15, Rounding.HALF_EVEN)
    np.testing.assert_array_equal(model.abar_re, re)
    np.testing.assert_array_equal(model.abar_im, im)
    assert model.abar_corrected == 0 and model.saturated_weights == 0
    assert model.describe_formats()["abar"].startswith("polar: rho 4-bit, theta 6-bit")
    cartesian = polar_config()
    cartesian["quant"]["abar"] = {"format": "fixed<16,1>"}
    assert load_model(parse_config(cartesian)).abar_polar is None


@pytest.mark.parametrize("abar, message", [
    ({"form": "round"}, "quant.abar.form: 'round' is not allowed; allowed: cartesian, polar"),
    ({"rho_bits": 0}, "quant.abar.rho_bits: 0 is out of range; allowed 1..16"),
    ({"theta_bits": 2}, "quant.abar.theta_bits: 2 is out of range; allowed 3..16"),
    ({"theta_bits": "6"}, "quant.abar.theta_bits: must be an integer, not '6'"),
    ({"rho_bits": None}, "quant.abar.rho_bits: missing"),
    ({"format": "fixed<8,0>"}, "quant.abar.format: the polar form decodes |Abar| < 1 into it, "
                               "so it needs I >= 1 integer bits"),
    ({"form": "cartesian"}, "quant.abar.rho_bits: applies to form = \"polar\" only"),
    ({"shape": 1}, "quant.abar: unknown key(s) shape"),
])
def test_config_errors_name_the_field(abar, message):
    data = polar_config(**abar)
    data["quant"]["abar"] = {k: v for k, v in data["quant"]["abar"].items() if v is not None}
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert message in str(err.value)
