"""Small configs whose synthesis results are checked against stored baselines in CI."""

from regression_configs import make_config

SYNTH_CONFIGS = {
    "s4d_tiny": make_config("s4d_tiny", "s4d", channels=1, size=4, lanes=1, abar=(8, 1),
                            bbar=(8, 0), c=(8, 1), d=(6, 2), input=(8, 3), state=(10, 4),
                            output=(8, 4)),
    "s5_tiny": make_config("s5_tiny", "s5", channels=1, size=2, lanes=2, abar=(8, 1),
                           bbar=(8, 0), c=(8, 0), d=(6, 2), input=(8, 3), state=(10, 4),
                           output=(8, 4)),
}

#: (config, target) pairs checked against tests/baselines/synth.json.
BASELINE_RUNS = [("s4d_tiny", "ice40-up5k"), ("s4d_tiny", "ecp5-25k"),
                 ("s5_tiny", "ice40-up5k"), ("s5_tiny", "ecp5-25k")]

#: Small designs that isolate one feature each (rounding mode, overflow mode, fold factor,
#: per-mode state formats) beside the s4d_up5k example's widths, so that the LUT model's
#: fit (benchmarks/estimate_reference.py --fit) can tell those features apart; measured into
#: tests/baselines/estimate_reference.json as "probe:<name>" (Yosys only, no place and route).
_UP5K = dict(abar=(10, 1), bbar=(8, 0), c=(8, 1), d=(6, 2), input=(8, 3), state=(12, 4),
             output=(10, 4))
ESTIMATE_PROBES = {
    "s4d_g4_floor_wrap": make_config("s4d_g4_floor_wrap", "s4d", channels=2, size=4, lanes=1,
                                     rounding="floor", overflow="wrap", seed=5, **_UP5K),
    "s4d_g4_half_up": make_config("s4d_g4_half_up", "s4d", channels=2, size=4, lanes=1,
                                  rounding="half_up", seed=5, **_UP5K),
    "s4d_g4_toward_zero": make_config("s4d_g4_toward_zero", "s4d", channels=2, size=4, lanes=1,
                                      rounding="toward_zero", seed=5, **_UP5K),
    "s4d_g2_lanes2": make_config("s4d_g2_lanes2", "s4d", channels=2, size=4, lanes=2, seed=5,
                                 **_UP5K),
    "s4d_g8_lanes1": make_config("s4d_g8_lanes1", "s4d", channels=4, size=4, lanes=1, seed=5,
                                 **_UP5K),
    "s5_g1_floor_wrap": make_config("s5_g1_floor_wrap", "s5", channels=2, size=4, lanes=4,
                                    rounding="floor", overflow="wrap", **_UP5K),
    "s5_g1_half_even": make_config("s5_g1_half_even", "s5", channels=2, size=4, lanes=4, **_UP5K),
    "s5_g2_classes": make_config("s5_g2_classes", "s5", channels=2, size=4, lanes=2,
                                 state_int_bits=[2, 4, 2, 4], **_UP5K),
}
