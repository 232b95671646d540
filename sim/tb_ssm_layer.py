"""cocotb testbench of a generated SSM layer. Run through ``ssmgen.sim.runner``, not directly.

The job (JSON file named by the SSMGEN_JOB environment variable) gives the manifest, the integer
inputs (batch, time, H), optionally the golden outputs, stall probabilities and a seed. The test:

1. streams every sequence back to back with no stalls, measuring cycles per timestep (interval
   between output beats) and latency (input beat accepted -> output beat);
2. if stall probabilities are set, streams everything again with random idle cycles on the input
   and random back-pressure on the output;
3. compares each pass with the golden outputs bit for bit and checks the manifest's cycle figures;
4. writes the outputs and measurements to the job's results file.

The function names avoid a ``test_`` prefix so that pytest does not collect this module.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np

from .stream import Scoreboard, pack_fields, start_clock_and_reset, stream_pass


def _input_words(manifest, inputs):
    fields = manifest["ports"]["u__payload"]["fields"]
    words = []
    for sequence in inputs:
        for t, sample in enumerate(sequence):
            words.append(pack_fields(fields, [*sample.tolist(), int(t == 0)]))
    return words


@cocotb.test()
async def ssm_layer_stream(dut):
    """Stream the job's inputs through the layer and check against the golden outputs."""
    job = json.loads(open(os.environ["SSMGEN_JOB"]).read())
    manifest = json.loads(open(job["manifest"]).read())
    y_fields = manifest["ports"]["y__payload"]["fields"]
    inputs = np.load(job["inputs"])
    expected = np.load(job["expected"]) if job.get("expected") else None
    seed = int(job.get("seed", 0))
    rng = random.Random(seed)
    batch, steps, channels = inputs.shape
    describe = lambda i: f"seed {seed}: beat {i} (sequence {i // steps}, t {i % steps})"  # noqa: E731

    counter = await start_clock_and_reset(dut)

    words = _input_words(manifest, inputs)
    out_a, sent, received = await stream_pass(dut, counter, words, len(words), y_fields, idle=0.0, stall=0.0, rng=rng)
    passes = {"no stalls": out_a}
    measured = {}
    if len(received) > 1:
        measured["cycles_per_timestep"] = (received[-1] - received[0]) / (len(received) - 1)
    if received:
        measured["latency_cycles"] = received[0] - sent[0]
    idle, stall = float(job.get("idle_probability", 0)), float(job.get("stall_probability", 0))
    if idle or stall:
        out_b, _, _ = await stream_pass(dut, counter, words, len(words), y_fields, idle=idle, stall=stall, rng=rng)
        passes[f"random stalls (in {idle}, out {stall})"] = out_b

    mismatches = []
    if expected is not None:
        flat = expected.reshape(-1, channels).tolist()
        for name, outputs in passes.items():
            board = Scoreboard(flat)
            board.compare(outputs, lambda i: f"{name}: {describe(i)}")
            mismatches += board.mismatches
    np.savez(job["results"], outputs=np.array(out_a, dtype=np.int64).reshape(batch, steps, channels),
             mismatches=np.array(mismatches, dtype=str), cycles=np.array(counter.now),
             **{k: np.array(v) for k, v in measured.items()})

    hw = manifest["hardware"]
    assert not mismatches, f"{len(mismatches)} mismatching beats; first: {mismatches[:5]}"
    if "cycles_per_timestep" in measured and job.get("check_timing", True):
        assert measured["cycles_per_timestep"] == hw["cycles_per_timestep"], (
            f"measured {measured['cycles_per_timestep']} cycles/timestep, manifest says "
            f"{hw['cycles_per_timestep']}")
    if "latency_cycles" in measured and job.get("check_timing", True):
        assert measured["latency_cycles"] == hw["latency_cycles"], (
            f"measured latency {measured['latency_cycles']}, manifest says {hw['latency_cycles']}")
