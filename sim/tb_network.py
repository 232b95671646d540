"""cocotb testbench of a generated whole network. Run through ``ssmgen.sim.network_sim``.

The job (JSON file named by the SSMGEN_JOB environment variable) gives the manifest, the integer
inputs (batch, T, H_in), optionally the golden logits (batch, classes) and predictions (batch,),
stall probabilities and a seed. The test:

1. streams every sequence back to back with no stalls (``start`` on each first beat, ``last`` on
   each final beat), measuring the latency from a sequence's last beat to its output beat;
2. if stall probabilities are set, streams everything again with random idle cycles on the input
   and random back-pressure on the output;
3. compares each pass with the golden logits and predictions bit for bit and the measured latency
   with the manifest's;
4. writes the outputs and measurements to the job's results file.

The function name avoids a ``test_`` prefix so that pytest does not collect this module.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np

from .stream import Scoreboard, sequence_words, start_clock_and_reset, stream_pass


@cocotb.test()
async def network_stream(dut):
    """Stream the job's sequences through the network and check against the golden model."""
    job = json.loads(open(os.environ["SSMGEN_JOB"]).read())
    manifest = json.loads(open(job["manifest"]).read())
    y_fields = manifest["ports"]["y__payload"]["fields"]
    inputs = np.load(job["inputs"])
    expected = None
    if job.get("expected_logits"):
        logits = np.load(job["expected_logits"])
        preds = np.load(job["expected_predictions"])
        expected = [[*row, int(p)] for row, p in zip(logits.tolist(), preds.tolist())]
    seed = int(job.get("seed", 0))
    rng = random.Random(seed)
    batch, steps, _ = inputs.shape

    counter = await start_clock_and_reset(dut)

    words = sequence_words(manifest["ports"]["u__payload"]["fields"], inputs)
    out_a, sent, received = await stream_pass(dut, counter, words, batch, y_fields,
                                               idle=0.0, stall=0.0, rng=rng)
    passes = {"no stalls": out_a}
    latencies = [r - s for s, r in zip(sent[steps - 1::steps], received)]
    idle, stall = float(job.get("idle_probability", 0)), float(job.get("stall_probability", 0))
    if idle or stall:
        out_b, _, _ = await stream_pass(dut, counter, words, batch, y_fields, idle=idle,
                                         stall=stall, rng=rng)
        passes[f"random stalls (in {idle}, out {stall})"] = out_b

    mismatches = []
    if expected is not None:
        for name, outputs in passes.items():
            board = Scoreboard(expected)
            board.compare(outputs, lambda i, name=name: f"{name}: seed {seed}: sequence {i} "
                                             f"(logits..., prediction)")
            mismatches += board.mismatches
    out = np.array(out_a, dtype=np.int64).reshape(batch, -1)
    np.savez(job["results"], logits=out[:, :-1], predictions=out[:, -1],
             mismatches=np.array(mismatches, dtype=str), cycles=np.array(counter.now),
             latency_cycles=np.array(latencies, dtype=np.int64))

    assert not mismatches, f"{len(mismatches)} mismatching outputs; first: {mismatches[:5]}"
    if job.get("check_timing", True):
        want = manifest["hardware"]["latency_cycles"]
        assert latencies == [want] * len(latencies), (
            f"measured latencies {latencies}, manifest says {want}")
