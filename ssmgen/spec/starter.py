"""``ssmgen init``: a commented starting config for a single layer, valid as written.

Every key is shown with what it means and what it allows, so a user edits a working file rather
than writing one from the reference (docs/config.md, the docstring of ``config.py``).
"""

from __future__ import annotations

__all__ = ["starter_config", "KINDS"]

KINDS = ("s4d", "s5")

_MODEL = {
    "s4d": '''[model]
kind = "s4d"              # S4D: one SISO SSM per channel (s5: one MIMO SSM over all channels)
channels = 4              # H: input and output channels, 1..4096
state_size = 8            # N per channel, even: N/2 complex modes each, H * N/2 states in all
''',
    "s5": '''[model]
kind = "s5"               # S5: one MIMO SSM over all channels (s4d: one SISO SSM per channel)
channels = 4              # H: input and output channels, 1..4096
states = 8                # P: complex states, 1..65536
''',
}

_REST = '''
[weights]
source = "random"         # "random": demo weights (S4D-Lin / S5 init, ZOH); or "file"
seed = 1                  # random only; dt_min = 0.01, dt_max = 0.1 set the ZOH step range
# source = "file"
# file = "weights.npz"    # Abar, Bbar, C, D (discrete); path relative to this file

# Every component has a format fixed<W,I>: W bits, I integer bits including the sign (as
# ap_fixed), 2 <= W <= 24, -24 <= I <= W. A value entering a format is rounded once and then
# fitted into range once; products and sums before that are exact.
[quant.defaults]          # inherited by the components below that do not set their own
rounding = "half_even"    # floor | half_up | half_even | toward_zero
overflow = "saturate"     # saturate | wrap

[quant.abar]              # the poles, complex, kept strictly inside the unit circle
format = "fixed<12,1>"
# form = "polar"          # store 1 - |Abar| (rho_bits) and arg Abar (theta_bits) as mantissas
# rho_bits = 4            # with per-mode exponents; decoded exactly into `format` (needs I >= 1)
# theta_bits = 6
[quant.bbar]              # input weights (complex)
format = "fixed<10,-2>"
[quant.c]                 # output weights (complex; s4d: the factor 2 of conjugate modes inside)
format = "fixed<10,1>"
[quant.d]                 # feed-through
format = "fixed<8,2>"
[quant.input]             # the input samples
format = "fixed<8,3>"
[quant.state]             # the state x
format = "fixed<16,4>"
int_bits = "auto"         # per-mode integer bits: "auto" (the fewest that provably cannot
                          # overflow), a list with one integer per state, or omit for one format
[quant.output]            # the outputs y
format = "fixed<12,4>"

[quant.state_acc]         # the sum Abar x + Bbar u before it enters the state
format = "full"           # "full": exact, width derived; or a fixed<W,I> with rounding/overflow
[quant.output_acc]        # the sum Re(C x) + D u before it enters the output
format = "full"

[quant]
abar_stability = "correct"    # "correct": pull a pole that rounds onto or outside the unit
                              # circle back inside; "reject": stop with an error instead

[hardware]
lanes = 1                 # states updated per clock cycle; divides the state count. A timestep
                          # takes states / lanes cycles; lanes = states: one timestep per cycle
complex_multipliers = 3   # real multipliers per complex product: 3 (Gauss) or 4
loop_stages = "auto"      # registers in the state-update loop, 1..min(states / lanes, 7);
                          # "auto": the most. More stages, higher Fmax, same cycles per timestep
'''


def starter_config(kind: str = "s4d", *, name: str = "my_ssm") -> str:
    """The TOML text of a commented single-layer config of ``kind`` ("s4d" or "s5")."""
    if kind not in KINDS:
        raise ValueError(f"--kind: must be one of {', '.join(KINDS)}, not {kind!r}")
    if not name.isidentifier():
        raise ValueError(f"--name: must be an identifier (letters, digits, _), not {name!r}")
    header = (f"# A starting ssmgen config ({kind}): every key with what it allows. The full "
              f"reference:\n# docs/config.md. Check it with `ssmgen generate {name}.toml -o "
              f"build/{name}`.\nname = \"{name}\"\n\n")
    return header + _MODEL[kind] + _REST
