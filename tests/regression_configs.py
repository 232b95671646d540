"""The RTL regression's configs: s4d and s5, Abar 2..16 bits (Cartesian and polar), state 4..24 bits, every rounding
and overflow mode, per-mode state formats, narrow accumulators, lanes in {1, a divisor, all}, state-update loops of
every legal length 1..7, states and weights in registers and in memories (block RAM), every
product a multiplier or some in logic (hardware.dsp_products).

The flag beside each config marks those whose stimulus must actually overflow the state, the
output or an accumulator (checked by flipping wrap <-> saturate and seeing the outputs change).
"""

from __future__ import annotations

import copy


def make_config(name, kind, *, channels, size, lanes, abar=(12, 1), bbar=(8, 0), c=(8, 0),
                d=(8, 2), input=(8, 3), state=(16, 5), output=(12, 5), rounding="half_even",
                overflow="saturate", per_component=None, state_int_bits=None, state_acc=None,
                output_acc=None, complex_multipliers=3, seed=0, dt=(0.01, 0.1),
                loop_stages="auto", storage=None, dsp_products=None):
    """A config dict (TOML structure). ``size`` is P for s5 and N for s4d."""
    formats = dict(abar=abar, bbar=bbar, c=c, d=d, input=input, state=state, output=output)
    quant = {"defaults": {"rounding": rounding, "overflow": overflow}}
    for comp, (w, i) in formats.items():
        quant[comp] = {"format": f"fixed<{w},{i}>"}
    for comp, extra in (per_component or {}).items():
        quant[comp].update(extra)
    if state_int_bits is not None:
        quant["state"]["int_bits"] = state_int_bits
    for acc_name, acc in (("state_acc", state_acc), ("output_acc", output_acc)):
        if acc is not None:
            quant[acc_name] = copy.deepcopy(acc)
    model = {"kind": kind, "channels": channels}
    model["states" if kind == "s5" else "state_size"] = size
    return {"name": name, "model": model,
            "weights": {"source": "random", "seed": seed, "dt_min": dt[0], "dt_max": dt[1]},
            "quant": quant,
            "hardware": {"lanes": lanes, "complex_multipliers": complex_multipliers,
                         "loop_stages": loop_stages,
                         **({} if storage is None else {"storage": storage}),
                         **({} if dsp_products is None else {"dsp_products": dsp_products})}}


# (config, overflows)
REGRESSION = [
    (make_config("s4d_parallel_wide", "s4d", channels=2, size=4, lanes=4,
                 abar=(16, 1), bbar=(16, 0), c=(16, 1), state=(24, 6), output=(16, 5)), False),
    (make_config("s4d_lanes1_floor_wrap", "s4d", channels=2, size=4, lanes=1,
                 abar=(8, 1), state=(12, -2), rounding="floor", overflow="wrap",
                 per_component={"abar": {"overflow": "saturate"}, "bbar": {"overflow": "saturate"},
                                "c": {"overflow": "saturate"}, "d": {"overflow": "saturate"}}), True),
    (make_config("s4d_lanes3_cross_channel_half_up", "s4d", channels=3, size=4, lanes=3,
                 state=(8, 1), output=(8, 2), rounding="half_up"), True),
    (make_config("s5_parallel_toward_zero", "s5", channels=3, size=4, lanes=4,
                 state=(16, 6), rounding="toward_zero"), False),
    (make_config("s5_lanes1_state_wrap", "s5", channels=2, size=4, lanes=1, abar=(10, 1),
                 state=(10, 0), per_component={"state": {"overflow": "wrap"}}, loop_stages=1), True),
    (make_config("s5_lanes2_floor", "s5", channels=2, size=6, lanes=2, abar=(6, 1),
                 state=(8, 3), rounding="floor"), False),
    (make_config("s5_abar2", "s5", channels=2, size=4, lanes=2, abar=(2, 1), state=(6, 0),
                 output=(6, 2)), True),
    (make_config("s4d_abar3_state4", "s4d", channels=2, size=4, lanes=2, abar=(3, 1),
                 state=(4, 1), output=(6, 2)), True),
    (make_config("s5_abar4_stability", "s5", channels=2, size=8, lanes=8, abar=(4, 1),
                 state=(8, 3), dt=(0.03, 0.08), seed=4), False),
    (make_config("s5_state4_saturate", "s5", channels=2, size=4, lanes=4, state=(4, 1),
                 output=(6, 2), dsp_products=5), True),
    (make_config("s4d_state24_lanes2", "s4d", channels=2, size=4, lanes=2, abar=(16, 1),
                 c=(12, 1), state=(24, 6), output=(20, 6)), False),
    (make_config("s4d_auto_int_bits", "s4d", channels=2, size=6, lanes=3, state=(12, 4),
                 state_int_bits="auto", rounding="half_up"), False),
    (make_config("s5_per_mode_classes", "s5", channels=2, size=6, lanes=2, state=(10, 3),
                 state_int_bits=[-1, 0, 3, -1, 0, 3]), True),
    (make_config("s5_narrow_acc_wrap", "s5", channels=2, size=4, lanes=2, state=(10, 4),
                 state_acc={"format": "fixed<12,1>", "rounding": "floor", "overflow": "wrap"},
                 output_acc={"format": "fixed<12,3>", "rounding": "half_up", "overflow": "wrap"}),
     True),
    (make_config("s4d_narrow_acc_saturate_lanes1", "s4d", channels=2, size=4, lanes=1,
                 state=(10, 3), output=(8, 2),
                 state_acc={"format": "fixed<11,2>", "rounding": "half_even", "overflow": "saturate"},
                 output_acc={"format": "fixed<10,2>", "rounding": "toward_zero", "overflow": "saturate"}),
     True),
    (make_config("s5_four_multipliers", "s5", channels=2, size=4, lanes=4, complex_multipliers=4,
                 abar=(14, 1), state=(18, 6)), False),
    (make_config("s4d_four_multipliers_lanes1", "s4d", channels=2, size=4, lanes=1,
                 complex_multipliers=4, abar=(10, 1), state=(12, 4), loop_stages=2), False),
    (make_config("s5_output_wrap", "s5", channels=2, size=4, lanes=4, output=(6, 1),
                 per_component={"output": {"overflow": "wrap", "rounding": "floor"}}), True),
    (make_config("s4d_mixed_rounding", "s4d", channels=2, size=8, lanes=2, state=(9, 3),
                 per_component={"input": {"rounding": "floor"}, "state": {"rounding": "toward_zero"},
                                "output": {"rounding": "half_up"}}, loop_stages=3), False),
    (make_config("s5_state_saturate_half_even_lanes3", "s5", channels=3, size=6, lanes=3,
                 abar=(9, 1), state=(6, 1), output=(8, 3)), True),
    # the longer state-update loops: 5 to 7 pipeline stages (G = P / lanes >= L)
    (make_config("s5_loop5_auto_int_bits", "s5", channels=2, size=5, lanes=1, state=(12, 4),
                 state_int_bits="auto", loop_stages=5), False),
    (make_config("s4d_loop6_narrow_acc", "s4d", channels=2, size=12, lanes=2, state=(12, 4),
                 state_acc={"format": "fixed<14,3>", "rounding": "floor", "overflow": "saturate"},
                 loop_stages=6), False),
    (make_config("s5_loop7_four_multipliers", "s5", channels=2, size=8, lanes=1,
                 complex_multipliers=4, abar=(12, 1), state=(14, 5), loop_stages=7), False),
    (make_config("s4d_loop7_routed", "s4d", channels=3, size=16, lanes=3, state=(12, 4),
                 rounding="half_up"), False),
    # polar Abar (4-bit radius, 6-bit angle), decoded into fixed<16,1> for the datapath
    (make_config("s4d_polar_abar", "s4d", channels=2, size=8, lanes=2, abar=(16, 1),
                 state=(12, 4), dt=(0.001, 0.02),
                 per_component={"abar": {"form": "polar", "rho_bits": 4, "theta_bits": 6}}),
     False),
    # states and per-state weights in memories (hardware.storage): "auto" from G = 16 on, forced
    # for small G; the transparent read (L = G), a stage-0 weight read (L = 1), per-mode state
    # classes, polar Abar, four multipliers, and a routed s4d readout
    (make_config("s4d_memory_auto_g16", "s4d", channels=4, size=8, lanes=1, state=(12, 4),
                 rounding="half_up"), False),
    (make_config("s5_memory_loop1", "s5", channels=2, size=16, lanes=1, state=(12, 4),
                 loop_stages=1), False),
    (make_config("s4d_memory_transparent", "s4d", channels=2, size=4, lanes=1, state=(8, 1),
                 output=(8, 2), overflow="wrap", storage="memory"), True),
    (make_config("s5_memory_per_mode_classes", "s5", channels=2, size=6, lanes=2, state=(10, 3),
                 state_int_bits=[-1, 0, 3, -1, 0, 3], storage="memory"), True),
    (make_config("s4d_memory_polar_lanes2", "s4d", channels=2, size=32, lanes=2, abar=(16, 1),
                 state=(12, 4), dt=(0.001, 0.02), loop_stages=2, dsp_products=3,
                 per_component={"abar": {"form": "polar", "rho_bits": 4, "theta_bits": 6}}), False),
    (make_config("s5_memory_four_multipliers", "s5", channels=2, size=32, lanes=1,
                 complex_multipliers=4, abar=(10, 1), state=(14, 5), loop_stages=4,
                 dsp_products=0), False),
    (make_config("s4d_memory_routed_lanes3", "s4d", channels=3, size=32, lanes=3,
                 state=(12, 4), loop_stages=6,
                 state_acc={"format": "fixed<16,3>", "rounding": "floor", "overflow": "saturate"}),
     False),
]
