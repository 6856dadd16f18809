# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Windows per second sampled from an AIMEDataset, state and visual, the memory of a build and the storage's size.

    python benchmarks/bench_data.py [--episodes 100] [--batch 50] [--horizon 50] [--dir /tmp/aime_bench]

Writes walker-shaped episodes (501 frames: orientations 14, height 1, velocity 9, 6-d actions,
and 64x64x3 uint8 images for the visual set) in the official format, builds the datasets (timed)
and samples ``[batch, horizon]`` windows. Anonymous memory (RssAnon: what is not the memory-mapped
storage) is read after the build: it must stay far below the dataset's uint8 size. The storage holds
each sensor once per frame: a visual dataset takes about its uint8 images on disk (before the frame
layout, with every sensor at the root and under "next", it took twice that).
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from aime_torchrl.data import AIMEDataset, save_episode


def write_episodes(folder: Path, episodes: int, image: bool) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    frames = 501
    for k in range(episodes):
        episode = {
            "orientations": rng.normal(size=(frames, 14)).astype(np.float32),
            "height": rng.normal(size=(frames, 1)).astype(np.float32),
            "velocity": rng.normal(size=(frames, 9)).astype(np.float32),
            "pre_action": rng.uniform(-1, 1, (frames, 6)).astype(np.float32),
            "reward": rng.uniform(0, 1, (frames, 1)).astype(np.float32),
            "is_first": np.arange(frames)[:, None] == 0,
            "is_last": np.arange(frames)[:, None] == frames - 1,
            "is_terminal": np.zeros((frames, 1), bool),
        }
        if image:  # smooth images compress like rendered ones; noise would not
            base = rng.integers(0, 256, (1, 8, 8, 3), dtype=np.uint8)
            episode["image"] = np.repeat(np.repeat(np.repeat(base, frames, 0), 8, 1), 8, 2)
        save_episode(folder / f"{k}.npz", episode)
    return episodes * frames * 64 * 64 * 3 if image else 0


def rss_anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--horizon", type=int, default=50)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/aime_bench"))
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)

    print(f"{args.episodes} episodes of 501 frames, windows of {args.batch} x {args.horizon}")
    print("| dataset | build s | windows/s | RssAnon after build (MB) | uint8 images (MB) | storage on disk (MB) |")
    print("|---|---|---|---|---|---|")
    for name, image in (("state", False), ("visual", True)):
        image_bytes = write_episodes(args.dir / name, args.episodes, image)
        start = time.perf_counter()
        data = AIMEDataset(args.dir / name, horizon=args.horizon, batch_size=args.batch, root=args.dir / "cache", progress=False)
        build = time.perf_counter() - start
        rss = rss_anon_mb()
        data.sample()
        start = time.perf_counter()
        for _ in range(args.batches):
            data.sample()
        rate = args.batches * args.batch / (time.perf_counter() - start)
        disk = sum(p.stat().st_size for p in data.data_path.rglob("*") if p.is_file())
        print(f"| {name} | {build:.1f} | {rate:.0f} | {rss:.0f} | {image_bytes / 2**20:.0f} | {disk / 2**20:.1f} |")
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
