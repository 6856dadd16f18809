# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Videos as animated GIFs (Pillow only: no ffmpeg, torchvision or codec needed)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torchrl.record.loggers import Logger


def side_by_side(*videos: torch.Tensor | np.ndarray, gap: int = 2) -> torch.Tensor:
    """Puts videos (uint8 ``[T, 3, H, W]``, same H) next to each other, white gaps between them;
    shorter ones hold their last frame.

    Examples:
        >>> import torch
        >>> side_by_side(torch.zeros(5, 3, 8, 8, dtype=torch.uint8), torch.zeros(3, 3, 8, 6, dtype=torch.uint8)).shape
        torch.Size([5, 3, 8, 16])
    """
    videos = [torch.as_tensor(v) for v in videos]
    length = max(len(v) for v in videos)
    parts = []
    for i, v in enumerate(videos):
        if len(v) < length:
            v = torch.cat([v, v[-1:].expand(length - len(v), *v.shape[1:])])
        if i:
            parts.append(torch.full((length, 3, v.shape[2], gap), 255, dtype=torch.uint8))
        parts.append(v)
    return torch.cat(parts, -1)


def save_gif(video: torch.Tensor | np.ndarray, path: str | Path, *, fps: int = 25, scale: int = 2) -> Path:
    """Writes a uint8 ``[T, 3, H, W]`` video to ``path`` as a looping GIF, upscaled ``scale`` times."""
    from PIL import Image

    video = torch.as_tensor(video)
    if video.dim() != 4 or video.shape[1] != 3 or video.dtype != torch.uint8:
        raise ValueError(f"Expected a uint8 video [T, 3, H, W], got {tuple(video.shape)} {video.dtype}.")
    if scale > 1:
        video = video.repeat_interleave(scale, -1).repeat_interleave(scale, -2)
    frames = [Image.fromarray(frame.permute(1, 2, 0).numpy()) for frame in video]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=round(1000 / fps), loop=0)
    return path


def imitation_videos(actor, make_env: Callable[[], object], demo_file: str | Path, embodiment: str, folder: str | Path,
                     windows=None, context: int = 5, logger: Logger | None = None, step: int | None = None) -> list[Path]:
    """The videos of an imitation run: ``aime_vs_demonstration.gif``, an episode of ``actor`` (a
    :class:`~aime_torchrl.modules.FilteringActor`) in ``make_env()`` (an env that renders
    ``pixels``) next to the demonstration ``demo_file`` (its images, or its physics states
    rendered, else a blank), and with ``windows`` (TorchRL windows of an image setup)
    ``open_loop_prediction.gif``: the true frames next to the actor's world model's open-loop
    predictions from ``context`` frames on. With a TorchRL ``logger`` each video also goes to its
    ``log_video`` (``videos/<name>``, ``[1, T, 3, H, W]`` uint8, at ``step``): files under its csv
    folder, a TensorBoard or wandb video. Returns the paths written; where rendering is not possible
    (e.g. no OpenGL) it says why and writes nothing.
    """
    from aime_torchrl.data.npz import load_episode
    from aime_torchrl.envs.dmc import render_states
    from aime_torchrl.evaluation.prediction import open_loop_prediction
    from aime_torchrl.evaluation.rollouts import record_episode

    folder = Path(folder)
    demo = load_episode(demo_file)
    try:
        with torch.random.fork_rng():
            _, frames = record_episode(actor, make_env().append_transform(actor.make_tensordict_primer()))
        if "physics" in demo:
            demo_frames = torch.from_numpy(render_states(embodiment, demo["physics"])).permute(0, 3, 1, 2)
        elif "image" in demo:
            demo_frames = torch.from_numpy(demo["image"]).permute(0, 3, 1, 2)
        else:
            demo_frames = torch.zeros_like(frames)
    except RuntimeError as err:
        print(f"no videos: {err}")
        return []
    videos = {"aime_vs_demonstration": side_by_side(frames, demo_frames)}
    paths = [save_gif(videos["aime_vs_demonstration"], folder / "aime_vs_demonstration.gif")]
    if windows is not None:
        world_model = actor.world_model
        predicted = open_loop_prediction(world_model, windows, context=context)["pixels"]
        predicted = predicted.clamp(0, 1).mul(255).to(torch.uint8)
        truth = world_model.to_frames(windows).get(("next", "pixels"))
        rows = [side_by_side(t, p) for t, p in zip(truth.cpu(), predicted.cpu())]
        videos["open_loop_prediction"] = torch.cat(rows, -2)
        paths.append(save_gif(videos["open_loop_prediction"], folder / "open_loop_prediction.gif", fps=10))
    if logger is not None:
        for name, video in videos.items():
            logger.log_video(f"videos/{name}", video.unsqueeze(0), step=step)
    return paths
