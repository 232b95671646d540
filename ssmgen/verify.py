"""``ssmgen verify``: the cocotb regression of one design (a user's config or trained MODEL_DIR),
as a CI job runs it.

For every seed: a stimulus (``ssmgen.stimulus``), streamed through the generated RTL with random
idle cycles on the input and back-pressure on the output (``Design.simulate``: the same
testbench the project's own regression uses), every output beat compared bit for bit with the
golden model, and the measured cycles per timestep and latencies with the manifest's. A seed
passes only when all of that holds. Results come as one line per seed, a reproduction command,
the simulator log per seed, and optionally JUnit XML (one test case per seed) and JSON.
"""

from __future__ import annotations

import json
import shlex
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .design import Design
from .stimulus import make_stimulus
from .util.files import write_atomically

__all__ = ["SeedResult", "VerifyReport", "verify_design", "parse_seeds", "write_results"]


@dataclass
class SeedResult:
    seed: int
    passed: bool
    failures: list[str]
    cycles_per_timestep: float | None     #: measured (no stalls)
    latencies: list[int]                  #: measured, per output beat (no stalls)
    simulated_cycles: int
    seconds: float
    log: str                              #: the simulator's log file
    summary: str = ""                     #: the one line ``ssmgen verify`` prints


def _summary(result: SeedResult, sequences: int, steps: int) -> str:
    if result.passed:
        return (f"seed {result.seed}: PASS  {sequences} x {steps} timesteps, every output beat "
                f"equals golden; {result.cycles_per_timestep:g} cycles/timestep and latency "
                f"{result.latencies[0]} as in the manifest; {result.simulated_cycles} cycles in "
                f"{result.seconds:.1f} s")
    return (f"seed {result.seed}: FAIL  {len(result.failures)} failure(s); first: "
            f"{result.failures[0]}")


@dataclass
class VerifyReport:
    config: str
    design: str
    kind: str
    model_hash: str
    simulator: str
    stimulus: str
    sequences: int
    steps: int
    idle_probability: float
    stall_probability: float
    cycles_per_timestep: int               #: the manifest's
    latency_cycles: int                    #: the manifest's
    seeds: list[SeedResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.seeds) and all(s.passed for s in self.seeds)

    def reproduce(self, seed: int) -> str:
        """The command that reruns exactly one seed."""
        args = ["ssmgen", "verify", self.config, "--seeds", str(seed), "--sim", self.simulator,
                "--stimulus", self.stimulus, "--idle", f"{self.idle_probability:g}",
                "--stall", f"{self.stall_probability:g}"]
        if not self.stimulus.endswith(".npy"):
            args += ["--sequences", str(self.sequences), "--steps", str(self.steps)]
        return shlex.join(args)

    def to_json(self) -> str:
        data = asdict(self)
        data["passed"] = self.passed
        for entry in data["seeds"]:
            entry["reproduce"] = self.reproduce(entry["seed"])
        return json.dumps(data, indent=2) + "\n"

    def to_junit(self) -> str:
        """JUnit XML: one test suite, one test case per seed (what CI systems display)."""
        total = sum(s.seconds for s in self.seeds)
        failures = sum(not s.passed for s in self.seeds)
        suites = ET.Element("testsuites", name="ssmgen verify", tests=str(len(self.seeds)),
                            failures=str(failures), errors="0", time=f"{total:.3f}")
        suite = ET.SubElement(suites, "testsuite", name=f"ssmgen verify {self.design}",
                              tests=str(len(self.seeds)), failures=str(failures), errors="0",
                              skipped="0", time=f"{total:.3f}")
        props = ET.SubElement(suite, "properties")
        for key in ("config", "kind", "model_hash", "simulator", "stimulus", "sequences",
                    "steps", "idle_probability", "stall_probability"):
            ET.SubElement(props, "property", name=key, value=str(getattr(self, key)))
        for result in self.seeds:
            case = ET.SubElement(suite, "testcase", classname=f"ssmgen.verify.{self.design}",
                                 name=f"seed {result.seed}", time=f"{result.seconds:.3f}")
            if not result.passed:
                failure = ET.SubElement(case, "failure", message=result.failures[0][:500],
                                        type="RTL mismatch")
                failure.text = "\n".join([*result.failures[:20],
                                          f"reproduce: {self.reproduce(result.seed)}",
                                          f"simulator log: {result.log}"])
            ET.SubElement(case, "system-out").text = result.summary
        ET.indent(suites)
        return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: a count N (seeds 0..N-1) or a comma-separated list of seeds."""
    try:
        values = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--seeds: must be a count (e.g. 3) or a list of seeds (e.g. 4,17), "
                         f"not {text!r}") from None
    if "," not in str(text):
        if len(values) != 1 or not 1 <= values[0] <= 1000:
            raise ValueError(f"--seeds: a count must be in 1..1000, not {text!r}")
        return list(range(values[0]))
    if not values or any(v < 0 for v in values) or len(set(values)) != len(values):
        raise ValueError(f"--seeds: a list must hold distinct seeds >= 0, not {text!r}")
    return values


def verify_design(design: Design, *, config: str, seeds: list[int], sequences: int = 4,
                  steps: int | None = None, stimulus: str = "full-range",
                  idle_probability: float = 0.3, stall_probability: float = 0.4,
                  simulator: str = "verilator", out_dir="ssmgen-verify", progress=None
                  ) -> VerifyReport:
    """Check ``design``'s RTL against its golden model for each seed (see the module docstring).
    ``config``: how the user named the design (in the reproduction command). The Verilog,
    manifest and per-seed simulator logs go to ``out_dir``. ``progress(line)`` receives each
    seed's summary line."""
    for name, p in (("--idle", idle_probability), ("--stall", stall_probability)):
        if not 0.0 <= p <= 0.9:
            raise ValueError(f"{name}: a probability in 0..0.9, not {p}")
    if sequences < 1:
        raise ValueError(f"--sequences: must be >= 1, not {sequences}")
    if design.steps is not None and steps not in (None, design.steps):
        raise ValueError(f"--steps: a network takes network.steps = {design.steps} timesteps "
                         f"per sequence, not {steps}")
    steps = design.steps or steps or 64
    if steps < 1:
        raise ValueError(f"--steps: must be >= 1, not {steps}")
    out_dir = Path(out_dir)
    report = VerifyReport(config=config, design=design.name, kind=design.kind,
                          model_hash=design.hash, simulator=simulator, stimulus=stimulus,
                          sequences=sequences, steps=steps, idle_probability=idle_probability,
                          stall_probability=stall_probability,
                          cycles_per_timestep=design.cycles_per_timestep,
                          latency_cycles=design.latency)
    for seed in seeds:
        u = make_stimulus(design, stimulus, sequences=sequences, steps=steps, seed=seed)
        report.sequences, report.steps = u.shape[0], u.shape[1]
        log = out_dir / "logs" / f"seed{seed}.log"
        start = time.perf_counter()
        sim = design.simulate(u, simulator=simulator, seed=seed,
                              idle_probability=idle_probability,
                              stall_probability=stall_probability, work_dir=out_dir,
                              raise_on_failure=False, log_path=log)
        check = sim.check
        result = SeedResult(seed=seed, passed=not check.failures, failures=list(check.failures),
                            cycles_per_timestep=check.cycles_per_timestep,
                            latencies=list(check.latencies),
                            simulated_cycles=check.simulated_cycles,
                            seconds=round(time.perf_counter() - start, 3), log=str(log))
        result.summary = _summary(result, report.sequences, report.steps)
        report.seeds.append(result)
        if progress is not None:
            progress(result.summary)
    return report


def write_results(report: VerifyReport, *, junit=None, json_path=None) -> None:
    """Write the JUnit XML and/or JSON results, each atomically."""
    if junit is not None:
        write_atomically(Path(junit), report.to_junit())
    if json_path is not None:
        write_atomically(Path(json_path), report.to_json())
