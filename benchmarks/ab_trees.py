# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""A benchmark script run under two source trees in turn (A B A B ...), with medians and the ratio.

    git worktree add --detach /tmp/base HEAD~3     # the code to compare with
    python benchmarks/ab_trees.py --a . --b /tmp/base --rounds 3 -- \\
        benchmarks/bench_rssm.py --belief 128 --state 32 --batch 32 --horizon 32 --steps 20 --json

The benchmark must end with one JSON line of numbers (``bench_rssm.py --json``); each tree is put first
on ``PYTHONPATH``, so the package is imported from it (the benchmark script itself is the one in
``--a``). Prints each figure's median per tree and the median of the A/B ratios of the rounds; the
last line is JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path


def run(tree: Path, script: list[str]) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=f"{tree.resolve()}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    out = subprocess.run([sys.executable, *script], env=env, check=True, capture_output=True, text=True).stdout
    last = json.loads(out.strip().splitlines()[-1])
    return {k: float(v) for k, v in last.items() if isinstance(v, (int, float))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", type=Path, required=True, help="the tree measured (its benchmark script runs)")
    parser.add_argument("--b", type=Path, required=True, help="the tree compared with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("script", nargs=argparse.REMAINDER, help="-- then the benchmark and its arguments")
    args = parser.parse_args()
    script = [s for s in args.script if s != "--"]
    if not script:
        parser.error("give the benchmark after --")
    script[0] = str((args.a / script[0]) if not Path(script[0]).is_absolute() else script[0])
    results: dict[str, list[dict[str, float]]] = {"a": [], "b": []}
    for _ in range(args.rounds):
        for name, tree in (("a", args.a), ("b", args.b)):
            results[name].append(run(tree, script))
    summary = {}
    for key in results["a"][0]:
        a = [r[key] for r in results["a"]]
        b = [r[key] for r in results["b"]]
        ratio = statistics.median(x / y for x, y in zip(a, b) if y)
        summary[key] = {"a": statistics.median(a), "b": statistics.median(b), "a_over_b": ratio}
        print(f"{key:>12}: A {summary[key]['a']:.3f}  B {summary[key]['b']:.3f}  A/B {ratio:.3f}  ({args.rounds} rounds)")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
