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
