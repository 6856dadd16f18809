# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The official AIME dataset format (one ``<k>.npz`` per episode) and its TorchRL layout.

An episode of L steps is stored as L + 1 *frames*: frame 0 is the ``reset()`` observation. Every
array has the frame as first axis: sensors (``orientations``, ``velocity``, ...), optional
``image`` (uint8 HxWx3), ``pre_action`` (the action that led to the frame, zero at frame 0),
``reward`` (received on the transition into the frame, zero at frame 0), ``is_first``,
``is_last``, ``is_terminal``; non-image arrays are 2-D (``[L + 1, 1]`` for scalars). This project
also stores ``physics`` (qpos, qvel) so that images can be re-rendered.

:func:`episode_to_frames` turns the arrays into tensors frame by frame (each sensor once per frame:
what :class:`~aime_torchrl.data.AIMEDataset` stores). TorchRL's layout, a view of the frames
(:func:`frames_to_transitions`), has one row per transition: row t holds o_t at the root,
``action`` a_t and ``("next", ...)`` o_{t+1}, ``reward``, ``done``. So ``action[t] = pre_action[t + 1]``.
"""
from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

#: Entries of a frame that are not sensors.
RESERVED = ("pre_action", "reward", "is_first", "is_last", "is_terminal")
FLAGS = ("is_first", "is_last", "is_terminal")
#: Entries of a frame tensordict (:func:`episode_to_frames`) that are not sensors.
FRAME_KEYS = (*RESERVED, "episode")


class DatasetFormatError(ValueError):
    """A file or folder does not follow the AIME dataset format; the message names it."""


def episode_files(folder: str | Path) -> list[Path]:
    """The ``<k>.npz`` files of ``folder`` in numeric order of ``k``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Dataset folder {folder} does not exist (or is not a folder).")
    files = [f for f in folder.iterdir() if f.suffix == ".npz"]
    bad = [f.name for f in files if not f.stem.isdigit()]
    if bad:
        raise DatasetFormatError(f"{folder}: episode files must be named <k>.npz with an integer k, got {bad[:5]}.")
    if not files:
        raise DatasetFormatError(f"Dataset folder {folder} holds no <k>.npz episode files.")
    return sorted(files, key=lambda f: int(f.stem))


def dataset_files(folders: Sequence[str | Path], num_episodes: int | None = None) -> list[Path]:
    """The episode files of ``folders`` in order (:func:`episode_files`), the first ``num_episodes`` if given."""
    files = [f for folder in folders for f in episode_files(folder)]
    if num_episodes is None:
        return files
    if not 1 <= num_episodes <= len(files):
        raise ValueError(f"num_episodes={num_episodes}, but {len(files)} episodes are available in {[str(f) for f in folders]}.")
    return files[:num_episodes]


def check_frames(path: str | Path, frames: int) -> None:
    """Refuses an episode of fewer than 2 frames (the reset frame and one step), naming ``path``."""
    if frames < 2:
        raise DatasetFormatError(
            f"{path}: {frames} frame(s); an episode is the reset frame and at least one step (2 frames or more)."
        )


def load_episode(path: str | Path) -> dict[str, np.ndarray]:
    """Reads and checks one episode file; every problem is reported with the file's path."""
    path = Path(path)
    try:
        with np.load(path) as data:
            arrays = {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise DatasetFormatError(f"{path}: not a readable .npz file ({err}).") from err
    missing = [k for k in RESERVED if k not in arrays]
    if missing:
        raise DatasetFormatError(f"{path}: missing {missing}; an AIME episode needs {list(RESERVED)}.")
    scalar = [k for k, v in arrays.items() if v.ndim == 0]
    if scalar:
        raise DatasetFormatError(f"{path}: {scalar} are scalars; every entry has the frame as first axis.")
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise DatasetFormatError(f"{path}: arrays have different numbers of frames: {lengths}.")
    frames = lengths["pre_action"]
    check_frames(path, frames)
    for key, value in arrays.items():
        if key in ("reward", *FLAGS):
            if value.size != frames:
                raise DatasetFormatError(f"{path}: {key} must hold one value per frame, [frames, 1]; got {list(value.shape)}.")
        elif key != "image" and value.ndim != 2:
            raise DatasetFormatError(
                f"{path}: {key} is a {value.ndim}-D array {list(value.shape)}; entries other than 'image' are "
                f"[frames, size] (one scalar per frame is [frames, 1]: save it as {key}[:, None], or with save_episode)."
            )
        if value.dtype.kind in "fiu" and key != "image":  # stored as float32 (flags as bool): check after the cast
            with np.errstate(over="ignore"):
                finite = np.isfinite(value.astype(np.float32)).reshape(len(value), -1).all(-1)
            if not finite.all():
                bad = np.nonzero(~finite)[0][:5].tolist()
                what = ("NaN or inf values" if value.dtype.kind == "f" and not np.isfinite(value).all() else
                        f"values beyond float32's range (|x| up to {np.abs(value).max():.3g}), which would be inf once "
                        "stored as float32")
                raise DatasetFormatError(f"{path}: {key} has {what} (frames {bad}).")
    first = arrays["is_first"].reshape(len(arrays["is_first"]), -1)[:, 0].astype(bool)
    if not first[0] or first[1:].any():
        raise DatasetFormatError(
            f"{path}: is_first must be true at frame 0 only (one episode per file); "
            f"it is true at frames {np.nonzero(first)[0][:5].tolist()}."
        )
    image = arrays.get("image")
    if image is not None and (image.dtype != np.uint8 or image.ndim != 4 or image.shape[-1] != 3):
        raise DatasetFormatError(
            f"{path}: image must be uint8 [frames, H, W, 3] (channels last); got {image.dtype} {list(image.shape)}."
        )
    return arrays


def save_episode(path: str | Path, episode: dict[str, np.ndarray]) -> None:
    """Writes one episode as a compressed ``.npz`` (what ``np.savez_compressed`` writes, and
    ``np.load`` reads); 1-D arrays become ``[L + 1, 1]``.

    Unlike ``np.savez_compressed`` the zip entries carry a fixed timestamp, so the same episode
    always gives the same bytes (datasets can be checked by checksum). The file appears
    atomically: an interrupted write never leaves a half-written episode.
    """
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, value in episode.items():
            value = np.asarray(value)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, value[:, None] if value.ndim == 1 else value, allow_pickle=False)
    tmp.replace(path)


def episode_to_frames(episode: dict[str, np.ndarray], index: int = 0) -> TensorDict:
    """Converts an episode of L + 1 frames to a tensordict of L + 1 frames: each sensor once per frame.

    Sensors are float32 (``image`` becomes ``pixels``, uint8 3xHxW); ``pre_action`` and ``reward``
    keep their frames (zero at frame 0) as float32, the flags ``is_first``, ``is_last`` and
    ``is_terminal`` become bool ``[L + 1, 1]``, and ``episode = index`` (int64). This is the layout of
    :class:`~aime_torchrl.data.AIMEDataset`'s storage; :func:`frames_to_transitions` lays it out as
    TorchRL transitions.

    Args:
        episode (dict of str to np.ndarray): the arrays of an episode (:func:`load_episode`).
        index (int, optional): the episode's id, ``"episode"`` in every frame. Defaults to ``0``.

    Examples:
        >>> import numpy as np
        >>> episode = {"velocity": np.zeros((11, 3), np.float32), "pre_action": np.zeros((11, 2), np.float32),
        ...     "reward": np.zeros((11, 1), np.float32), "is_first": np.eye(11, 1, dtype=bool),
        ...     "is_last": np.eye(11, 1, -10, dtype=bool), "is_terminal": np.zeros((11, 1), bool)}
        >>> frames = episode_to_frames(episode, index=4)
        >>> frames.batch_size, frames["velocity"].shape, frames["episode"][0].item()
        (torch.Size([11]), torch.Size([11, 3]), 4)
    """
    frames = TensorDict(batch_size=[len(episode["pre_action"])])
    for key, value in episode.items():
        if key in RESERVED:
            continue
        if key == "image":
            frames.set("pixels", torch.from_numpy(np.ascontiguousarray(value.transpose(0, 3, 1, 2))))
        else:
            frames.set(key, torch.as_tensor(value, dtype=torch.float32))
    frames.set("pre_action", torch.as_tensor(episode["pre_action"], dtype=torch.float32))
    frames.set("reward", torch.as_tensor(episode["reward"].reshape(-1, 1), dtype=torch.float32))
    for key in FLAGS:
        frames.set(key, torch.as_tensor(episode[key].reshape(-1, 1), dtype=torch.bool))
    frames.set("episode", torch.full(frames.batch_size, index, dtype=torch.int64))
    return frames


def frames_to_transitions(frames: TensorDictBase) -> TensorDict:
    """Lays frames ``[*B, T + 1]`` (:func:`episode_to_frames`) out as TorchRL's transitions ``[*B, T]``.

    Transition t holds the sensors of frame t at the root, ``action`` (``pre_action`` of frame
    t + 1), ``is_init`` (``is_first`` of frame t) and ``episode``, and under ``"next"`` the sensors
    of frame t + 1, ``reward``, ``done = is_last | is_terminal``, ``terminated = is_terminal`` and
    ``truncated = is_last & ~is_terminal`` of frame t + 1. Every entry of the frames but
    :data:`FRAME_KEYS` is a sensor. Every entry returned is contiguous: a slice of the frames where
    that is one (a single episode), a copy otherwise.

    Args:
        frames (TensorDictBase): consecutive frames of one episode, ``[*B, T + 1]`` (time last).

    Examples:
        >>> import numpy as np
        >>> episode = {"velocity": np.arange(11, dtype=np.float32)[:, None], "pre_action": np.zeros((11, 2), np.float32),
        ...     "reward": np.zeros((11, 1), np.float32), "is_first": np.eye(11, 1, dtype=bool),
        ...     "is_last": np.eye(11, 1, -10, dtype=bool), "is_terminal": np.zeros((11, 1), bool)}
        >>> steps = frames_to_transitions(episode_to_frames(episode).unsqueeze(0))
        >>> steps.batch_size, steps["velocity"][0, :3, 0].tolist(), steps["next", "velocity"][0, :3, 0].tolist()
        (torch.Size([1, 10]), [0.0, 1.0, 2.0], [1.0, 2.0, 3.0])
    """
    steps = frames.batch_size[-1] - 1
    time = (slice(None),) * (frames.batch_dims - 1)

    def now(key: str) -> torch.Tensor | TensorDictBase:
        return frames.get(key)[(*time, slice(0, steps))].contiguous()

    def after(key: str) -> torch.Tensor | TensorDictBase:
        return frames.get(key)[(*time, slice(1, None))].contiguous()

    sensors = [key for key in frames.keys() if key not in FRAME_KEYS]
    is_last, is_terminal = after("is_last"), after("is_terminal")
    out = TensorDict(
        {key: now(key) for key in sensors}, batch_size=[*frames.batch_size[:-1], steps], device=frames.device
    )
    out.set("action", after("pre_action"))
    out.set("is_init", now("is_first"))
    out.set("episode", now("episode"))
    for key in sensors:
        out.set(("next", key), after(key))
    out.set(("next", "reward"), after("reward"))
    out.set(("next", "done"), is_last | is_terminal)
    out.set(("next", "terminated"), is_terminal)
    out.set(("next", "truncated"), is_last & ~is_terminal)
    return out


def episode_to_td(episode: dict[str, np.ndarray], index: int = 0) -> TensorDict:
    """Converts an episode of L + 1 frames to L TorchRL rows: :func:`frames_to_transitions` of
    :func:`episode_to_frames`.

    Sensors are float32 (``image`` becomes ``pixels``, uint8 3xHxW), ``action = pre_action[1:]``,
    ``("next", "reward") = reward[1:]``, ``("next", "done") = is_last[1:] | is_terminal[1:]``,
    ``("next", "terminated") = is_terminal[1:]``, ``is_init = is_first[:-1]`` and ``episode = index``.
    """
    return frames_to_transitions(episode_to_frames(episode, index))


def load_episodes(
    folders: str | Path | Sequence[str | Path], *, num_episodes: int | None = None, sensors: Sequence[str] | None = None
) -> TensorDict:
    """The episodes of one or more folders in memory, ``[N, L]`` in TorchRL's layout (:func:`episode_to_td`;
    ``episode`` = the index among all of them), for :func:`~aime_torchrl.data.make_window_buffer` and
    :func:`~aime_torchrl.data.split_labelled`. Every episode must have the same length.

    Args:
        folders: one folder of ``<k>.npz`` episodes or several (concatenated in order).

    Keyword Args:
        num_episodes (int, optional): keep the first N. Defaults to all.
        sensors (sequence of str, optional): the sensors to keep (``None``: every array but
            ``physics``).

    Examples:
        >>> import tempfile, numpy as np
        >>> folder = tempfile.mkdtemp()
        >>> for k in range(3):
        ...     save_episode(f"{folder}/{k}.npz", {"position": np.zeros((11, 2), np.float32),
        ...         "pre_action": np.zeros((11, 1), np.float32), "reward": np.zeros((11, 1), np.float32),
        ...         "is_first": np.eye(11, 1, dtype=bool), "is_last": np.eye(11, 1, -10, dtype=bool),
        ...         "is_terminal": np.zeros((11, 1), bool)})
        >>> episodes = load_episodes(folder)
        >>> episodes.batch_size, episodes["episode"][:, 0].tolist()
        (torch.Size([3, 10]), [0, 1, 2])
    """
    files = dataset_files([folders] if isinstance(folders, (str, Path)) else list(folders), num_episodes)
    episodes = []
    for index, path in enumerate(files):
        episode = load_episode(path)
        keep = [k for k in episode if k in RESERVED or (k in sensors if sensors is not None else k != "physics")]
        missing = sorted(set(sensors or ()) - set(episode))
        if missing:
            raise DatasetFormatError(f"{path} lacks the sensors {missing}; it has {sorted(episode)}.")
        episodes.append(episode_to_td({k: episode[k] for k in keep}, index))
        if episodes[-1].batch_size != episodes[0].batch_size:
            raise DatasetFormatError(f"{path} has {episodes[-1].batch_size[0]} steps, {files[0]} {episodes[0].batch_size[0]}: "
                                     "load_episodes needs episodes of one length.")
    return torch.stack(episodes)


def td_to_episode(td: TensorDictBase) -> dict[str, np.ndarray]:
    """The inverse of :func:`episode_to_td`: L TorchRL rows of one episode to L + 1 frames.

    Every non-boolean root entry that also stands under ``"next"`` is a sensor (``pixels`` becomes
    ``image``, uint8 HxWx3). Frame 0 gets ``pre_action = 0``, ``reward = 0``, ``is_first = True``.
    """
    if td.batch_dims != 1:
        raise ValueError(f"Expected the rows of one episode, [L]; got batch_size {td.batch_size}.")
    episode: dict[str, np.ndarray] = {}
    next_td = td.get("next")
    for key in td.keys():
        if key in ("next", "action", "reward", "episode") or key not in next_td.keys():
            continue
        if td.get(key).dtype == torch.bool:  # done, terminated, truncated, is_init
            continue
        frames = torch.cat([td.get(key)[:1], next_td.get(key)]).cpu().numpy()
        if key == "pixels":
            episode["image"] = np.ascontiguousarray(frames.transpose(0, 2, 3, 1)).astype(np.uint8)
        else:
            episode[key] = frames.astype(np.float32).reshape(len(frames), -1)
    action = td.get("action").cpu().numpy().astype(np.float32)
    frames = len(td) + 1
    episode["pre_action"] = np.concatenate([np.zeros_like(action[:1]), action])
    reward = next_td.get("reward").cpu().numpy().astype(np.float32).reshape(-1, 1)
    episode["reward"] = np.concatenate([np.zeros((1, 1), np.float32), reward])
    first = np.zeros((frames, 1), bool)
    first[0] = True
    episode["is_first"] = first
    episode["is_last"] = np.concatenate([[[False]], next_td.get("done").cpu().numpy().reshape(-1, 1)])
    terminated = next_td.get("terminated", None)
    terminated = np.zeros((frames - 1, 1), bool) if terminated is None else terminated.cpu().numpy().reshape(-1, 1)
    episode["is_terminal"] = np.concatenate([[[False]], terminated])
    return episode
