"""``ssmgen verify`` for users who already run pytest: their designs become test cases.

In a test file of the user's project::

    from ssmgen.testing import verify_cases

    test_rtl = verify_cases(["designs/my_layer.toml", "models/sdigits"], seeds=3)

pytest then collects ``test_rtl[my_layer.toml-seed0]`` ... ``test_rtl[sdigits-seed2]``: one case
per design and seed, each the check ``ssmgen verify`` runs (generated RTL == golden model, bit
for bit, under random stalls; measured timing == manifest). A failing case shows the first
mismatching beats and the command that reproduces it. Relative paths are taken from the
directory of the test file that calls ``verify_cases``.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from .design import Design
from .verify import verify_design

__all__ = ["verify_cases"]


def verify_cases(paths, *, seeds: int | list[int] = 2, **options):
    """A pytest test function parametrized over ``paths`` (configs or MODEL_DIRs) x ``seeds`` (a
    count, or a list of seeds). ``options`` go to :func:`ssmgen.verify.verify_design`:
    ``sequences``, ``steps``, ``stimulus``, ``idle_probability``, ``stall_probability``,
    ``simulator``."""
    import pytest

    caller = Path(inspect.stack()[1].filename).resolve().parent
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    cases = [(caller / Path(p), seed) for p in paths for seed in seed_list]
    if not cases:
        raise ValueError("verify_cases: no designs or no seeds")
    for path, _ in cases:
        if not path.exists():
            raise FileNotFoundError(f"verify_cases: {path} does not exist")

    @pytest.mark.parametrize("path,seed", cases,
                             ids=[f"{path.name}-seed{seed}" for path, seed in cases])
    def test_verify(path, seed, tmp_path):
        report = verify_design(Design.load(path), config=str(path), seeds=[seed],
                               out_dir=tmp_path, **options)
        result = report.seeds[0]
        if not result.passed:
            details = "\n".join([*result.failures[:10], f"reproduce: {report.reproduce(seed)}",
                                 f"simulator log: {result.log}"])
            pytest.fail(f"{path.name} seed {seed}: RTL differs from the golden model or the "
                        f"manifest\n{details}", pytrace=False)

    return test_verify
