"""The cocotb testbench of every generated design (a layer or a whole network). Run through
``ssmgen.sim.verify.runner``, not directly.

The job (JSON file named by the SSMGEN_JOB environment variable) gives the manifest, the input
beats (int64 (batch, T, input fields): each beat's field values in the manifest's ``u__payload``
order, control bits included), optionally the expected output beats (int64 (batch, outputs per
sequence, output fields)), stall probabilities, a cycle budget and a seed. The manifest's
``stream.output_beat`` says whether an output beat follows every input beat ("timestep") or each
sequence's last ("sequence"). The test:

1. streams every sequence back to back with no stalls, measuring the interval between accepted
   input beats (cycles per timestep) and each output beat's latency from the input beat that
   completes it;
2. if stall probabilities are set, streams everything again with random idle cycles on the input
   and random back-pressure on the output;
3. compares each pass with the expected beats (every beat, bit for bit, none missing or extra)
   and the measured cycles per timestep and latencies with the manifest's;
4. writes the outputs, measurements and every failure to the job's results file.

A pass that has not received all its beats within the budget stops and fails (a design that
drops a beat fails the check instead of hanging it). The function name avoids a ``test_`` prefix
so that pytest does not collect this module.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import cocotb
import numpy as np

from ...hw.manifest import pack_fields
from .stream import Scoreboard, start_clock_and_reset, stream_pass


def _describe(seed: int, per_sequence: int, index: int) -> str:
    sequence, t = divmod(index, per_sequence)
    where = f"sequence {sequence}" + (f", t {t}" if per_sequence > 1 else "")
    return f"seed {seed}: output beat {index} ({where})"


@cocotb.test()
async def stream_check(dut):
    """Stream the job's beats through the design and check them against the expected beats."""
    job = json.loads(Path(os.environ["SSMGEN_JOB"]).read_text())
    manifest = json.loads(Path(job["manifest"]).read_text())
    u_fields = manifest["ports"]["u__payload"]["fields"]
    y_fields = manifest["ports"]["y__payload"]["fields"]
    hw = manifest["hardware"]
    inputs = np.load(job["inputs"])
    expected = np.load(job["expected"]) if job.get("expected") else None
    seed = int(job.get("seed", 0))
    rng = random.Random(seed)
    batch, steps, _ = inputs.shape
    per_sequence = 1 if manifest["stream"]["output_beat"] == "sequence" else steps
    count = batch * per_sequence
    # The input beat whose arrival completes output beat j (its latency is measured from it).
    span = steps // per_sequence
    trigger = [(j // per_sequence) * steps + (j % per_sequence) * span + span - 1
               for j in range(count)]
    words = [pack_fields(u_fields, beat) for sequence in inputs.tolist() for beat in sequence]
    budget = int(job["max_cycles"])

    counter = await start_clock_and_reset(dut)
    out_a, sent, received = await stream_pass(dut, counter, words, count, y_fields, idle=0.0,
                                               stall=0.0, rng=rng, max_cycles=budget)
    passes = {"no stalls": out_a}
    measured = {"latencies": [received[j] - sent[trigger[j]] for j in range(len(received))]}
    if len(sent) > 1:
        measured["cycles_per_timestep"] = (sent[-1] - sent[0]) / (len(sent) - 1)
    idle, stall = float(job.get("idle_probability", 0)), float(job.get("stall_probability", 0))
    if idle or stall:
        out_b, _, _ = await stream_pass(dut, counter, words, count, y_fields, idle=idle,
                                         stall=stall, rng=rng, max_cycles=budget)
        passes[f"random stalls (in {idle}, out {stall})"] = out_b

    failures = []
    for name, outputs in passes.items():
        if len(outputs) < count:
            failures.append(f"{name}: seed {seed}: received {len(outputs)} of {count} output "
                            f"beats within {budget} cycles")
    if expected is not None:
        flat = expected.reshape(count, -1).tolist()
        for name, outputs in passes.items():
            board = Scoreboard(flat)
            board.compare(outputs, lambda i, name=name: f"{name}: {_describe(seed, per_sequence, i)}")
            failures += board.mismatches
    if job.get("check_timing", True):
        if "cycles_per_timestep" in measured and measured["cycles_per_timestep"] != hw["cycles_per_timestep"]:
            failures.append(f"timing: measured {measured['cycles_per_timestep']:g} cycles per "
                            f"timestep, the manifest says {hw['cycles_per_timestep']}")
        wrong = [(j, lat) for j, lat in enumerate(measured["latencies"]) if lat != hw["latency_cycles"]]
        if wrong:
            j, lat = wrong[0]
            failures.append(f"timing: {len(wrong)} output beat(s) with a latency other than the "
                            f"manifest's {hw['latency_cycles']} cycles; first: "
                            f"{_describe(seed, per_sequence, j)}: {lat} cycles")
    outputs = (np.array(out_a, dtype=np.int64).reshape(batch, per_sequence, len(y_fields))
               if len(out_a) == count else np.zeros((0, per_sequence, len(y_fields)), np.int64))
    np.savez(job["results"], outputs=outputs, failures=np.array(failures, dtype=str),
             cycles=np.array(counter.now),
             latencies=np.array(measured["latencies"], dtype=np.int64),
             **({"cycles_per_timestep": np.array(measured["cycles_per_timestep"])}
                if "cycles_per_timestep" in measured else {}))
    assert not failures, f"{len(failures)} failure(s); first: {failures[:5]}"
