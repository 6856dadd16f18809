# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""V-D4RL's DeepMind Control datasets as embodiment data: its npz files converted to official AIME episodes.

V-D4RL (Lu et al., 2022; TorchRL's ``VD4RLExperienceReplay`` downloads the same files) ships its 64px
DeepMind Control data as DreamerV2 replay episodes: row t of a file holds ``image`` (the frame, uint8
HxWx3, or ``observation`` 3xHxW), ``action`` (the action that led to the frame: zero on an episode's
first row), ``reward`` (of arriving at it), ``is_first``, ``is_last``, ``is_terminal`` and
``discount``; a file may hold several episodes one after another. That is the official AIME layout
(``pre_action`` is V-D4RL's ``action``), so converting is renaming and splitting at ``is_first``.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from aime_torchrl.data.dataset import AIMEDataset, default_root
from aime_torchrl.data.npz import DatasetFormatError, save_episode

#: The arrays every V-D4RL file must hold besides its frames (``image`` or ``observation``).
VD4RL_KEYS = ("action", "reward", "is_first", "is_last", "is_terminal")


def _vd4rl_files(source: Path) -> list[Path]:
    """The ``.npz`` files of a V-D4RL folder (in name order), or the one file given."""
    files = sorted(source.glob("*.npz")) if source.is_dir() else [source]
    if not files or not all(f.is_file() for f in files):
        raise FileNotFoundError(f"No V-D4RL npz files at {source}.")
    return files


def _frames(path: Path, data: dict[str, np.ndarray]) -> np.ndarray:
    if "image" in data:
        frames = data["image"]
    elif "observation" in data and data["observation"].ndim == 4:
        frames = data["observation"].transpose(0, 2, 3, 1)
    else:
        raise DatasetFormatError(f"{path} has no frames: V-D4RL files hold `image` (N, H, W, 3) or `observation` "
                                 f"(N, 3, H, W); it has {sorted(data)}.")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise DatasetFormatError(f"{path}: frames of shape {frames.shape} and dtype {frames.dtype}; expected uint8 RGB.")
    return np.ascontiguousarray(frames)


def convert_vd4rl(source: str | Path, out: str | Path) -> Path:
    """Writes the episodes of V-D4RL npz files as official AIME episodes (``<k>.npz``, the ``visual`` setup's
    ``image`` sensor) into ``out``; the folder appears whole, or not at all.

    Args:
        source (str or Path): a V-D4RL ``.npz`` file or a folder of them (read in name order), e.g.
            ``vd4rl/main/walker_walk/medium/64px``.
        out (str or Path): the new folder (replaced if it exists).

    Returns the folder. Raises :class:`~aime_torchrl.data.DatasetFormatError` naming the file for a
    missing array, arrays of different lengths, a file that does not start an episode, or an episode
    whose first action is not zero (actions then belong to the frame they are taken at, not the
    DreamerV2 layout this conversion assumes).

    Examples:
        >>> import tempfile, numpy as np
        >>> n, folder = 6, Path(tempfile.mkdtemp())
        >>> np.savez(folder / "0.npz", image=np.zeros((n, 64, 64, 3), np.uint8), action=np.zeros((n, 6), np.float32),
        ...          reward=np.zeros(n, np.float32), discount=np.ones(n, np.float32), is_first=np.eye(n)[0] > 0,
        ...          is_last=np.eye(n)[-1] > 0, is_terminal=np.zeros(n, bool))
        >>> sorted(p.name for p in convert_vd4rl(folder, folder / "aime").iterdir())
        ['0.npz', 'info.json']
    """
    source, out = Path(source), Path(out)
    files = _vd4rl_files(source)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    returns = []
    for path in files:
        with np.load(path) as npz:
            data = {key: npz[key] for key in npz.files}
        missing = [key for key in VD4RL_KEYS if key not in data]
        if missing:
            raise DatasetFormatError(f"{path} lacks {missing}: a V-D4RL file holds {list(VD4RL_KEYS)} and its frames.")
        frames = _frames(path, data)
        arrays = {key: data[key].reshape(len(data[key]), -1) for key in VD4RL_KEYS}
        lengths = {key: len(value) for key, value in {**arrays, "frames": frames}.items()}
        if len(set(lengths.values())) != 1:
            raise DatasetFormatError(f"{path}: arrays of different lengths {lengths}.")
        starts = np.flatnonzero(arrays["is_first"][:, 0])
        if len(starts) == 0 or starts[0] != 0:
            raise DatasetFormatError(f"{path} does not start an episode (is_first[0] is false).")
        for start, end in zip(starts, [*starts[1:], len(frames)]):
            if np.any(arrays["action"][start] != 0):
                raise DatasetFormatError(
                    f"{path}: the episode at row {start} has a non-zero first action; V-D4RL's layout (DreamerV2's) "
                    "stores with each frame the action that led to it, zero on an episode's first frame.")
            episode = {"image": frames[start:end], "pre_action": arrays["action"][start:end].astype(np.float32),
                       "reward": arrays["reward"][start:end].astype(np.float32),
                       **{key: arrays[key][start:end].astype(bool) for key in ("is_first", "is_last", "is_terminal")}}
            save_episode(tmp / f"{len(returns)}.npz", episode)
            returns.append(float(episode["reward"].sum()))
    info = {"source": str(source), "episodes": len(returns), "mean_return": float(np.mean(returns)),
            "std_return": float(np.std(returns))}
    (tmp / "info.json").write_text(json.dumps(info, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return out


def open_vd4rl(source: str | Path, *, horizon: int, batch_size: int, root: str | Path | None = None,
               num_episodes: int | None = None, progress: bool = True) -> AIMEDataset:
    """An :class:`~aime_torchrl.data.AIMEDataset` of V-D4RL episodes, converted once (:func:`convert_vd4rl`) under
    ``root/vd4rl/`` and converted again when the source files change.

    TorchRL's dataset registry opens it too: ``torchrl.data.datasets.load_dataset("aime_vd4rl:<folder>",
    horizon=..., batch_size=...)``.

    Args:
        source (str or Path): a V-D4RL ``.npz`` file or folder of them.

    Keyword Args:
        horizon (int): the windows' length (TorchRL rows).
        batch_size (int): windows per sample.
        root (str or Path, optional): where datasets live. Defaults to :func:`~aime_torchrl.data.default_root`.
        num_episodes (int, optional): keep the first N episodes. Defaults to all.
        progress (bool, optional): a progress bar while the storage is built. Defaults to ``True``.
    """
    source = Path(source).expanduser().resolve()
    files = _vd4rl_files(source)
    stamp = hashlib.sha1(json.dumps([[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files]).encode())
    root = Path(root) if root is not None else default_root()
    out = root / "vd4rl" / f"{'-'.join(source.parts[-3:])}-{stamp.hexdigest()[:10]}"
    if not (out / "info.json").exists():
        convert_vd4rl(source, out)
    return AIMEDataset(out, horizon=horizon, batch_size=batch_size, num_episodes=num_episodes, root=root,
                       progress=progress)
