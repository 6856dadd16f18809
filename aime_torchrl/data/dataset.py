# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""AIME npz folders as a TorchRL offline dataset: memmapped once, sampled as windows."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
from tensordict import TensorDict
from torchrl.data import ImmutableDatasetWriter, TensorStorage
from torchrl.data.datasets import BaseDatasetExperienceReplay
from tqdm.auto import tqdm

from aime_torchrl.data.npz import dataset_files, DatasetFormatError, episode_to_frames, FRAME_KEYS, load_episode, RESERVED
from aime_torchrl.data.replay import WindowReplayBuffer

#: Bump when the processed layout changes, so that old caches are rebuilt rather than reused.
FORMAT_VERSION = 2


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (``flock`` on ``path``), e.g. around building a dataset."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def default_root() -> Path:
    """Where processed datasets are kept: ``$AIME_TORCHRL_DATA`` or ``~/.cache/aime_torchrl``."""
    return Path(os.environ.get("AIME_TORCHRL_DATA", Path.home() / ".cache" / "aime_torchrl"))


class AIMEDataset(BaseDatasetExperienceReplay, WindowReplayBuffer):
    """One or more folders of official AIME episodes as a TorchRL replay buffer of windows.

    On first use the episodes are checked (once: opening the storage again checks nothing more
    than the horizon), converted to frames (see :func:`~aime_torchrl.data.npz.episode_to_frames`:
    each sensor once per frame, an episode of L steps in L + 1 entries) and written episode by
    episode to a memory-mapped storage under ``root``; later uses open it again (a new file list,
    size or modification time rebuilds it). Pixels stay uint8 on disk and in the sampled batches,
    and nothing is held in RAM beyond one episode while building.

    ``sample()`` returns ``[batch_size, horizon]`` windows of consecutive steps in TorchRL's layout
    (o_t at the root, ``action`` a_t, ``("next", ...)`` o_{t+1}, see
    :func:`~aime_torchrl.data.npz.episode_to_td`) that never cross an episode, drawn uniformly
    with replacement (:class:`~aime_torchrl.data.replay.WindowSampler`, a TorchRL
    :class:`~torchrl.data.SliceSampler`): an episode, then a start in it, which is uniform over
    windows when episodes have the same length (DMC's always do). Each window is read as
    ``horizon + 1`` frames and laid out as transitions
    (:func:`~aime_torchrl.data.npz.frames_to_transitions`). ``len()`` counts transitions.

    Args:
        folders (path or sequence of paths): npz folders; several are merged in order (the paper's
            "mix" datasets).

    Keyword Args:
        horizon (int, optional): steps per window. Defaults to ``50``.
        batch_size (int, optional): windows per batch. Defaults to ``50``.
        num_episodes (int, optional): keep only the first N episodes (numeric file order, folders in
            order), e.g. the number of demonstrations. Defaults to all.
        episodes (Sequence[int], optional): then keep only these episodes (indices into those N),
            e.g. a split by episodes into training and validation data. Defaults to all.
        root (path, optional): cache folder. Defaults to :func:`default_root`.
        rebuild (bool, optional): rebuild the storage even if it exists. Defaults to ``False``.
        transform (Transform, optional): a TorchRL transform applied to the frames read from the
            storage, ``[batch_size * (horizon + 1)]`` (the layout of
            :func:`~aime_torchrl.data.npz.episode_to_frames`), before they are laid out as windows.
        prefetch (int, optional): batches to prefetch in background threads.
        progress (bool, optional): progress bar while building. Defaults to ``True``.

    Attributes:
        episode_returns (list[float]): the return of every episode, in storage order.
        episode_lengths (list[int]): the steps (transitions) of every episode, in storage order.
        files (list[str]): the source files, in storage order.

    Examples:
        >>> import tempfile, numpy as np
        >>> from aime_torchrl.data.npz import save_episode
        >>> folder = tempfile.mkdtemp()
        >>> for k in range(2):
        ...     save_episode(f"{folder}/{k}.npz", {"velocity": np.zeros((31, 3), np.float32),
        ...         "pre_action": np.zeros((31, 2), np.float32), "reward": np.zeros((31, 1), np.float32),
        ...         "is_first": np.eye(31, 1, dtype=bool), "is_last": np.eye(31, 1, -30, dtype=bool),
        ...         "is_terminal": np.zeros((31, 1), bool)})
        >>> data = AIMEDataset(folder, horizon=10, batch_size=4, root=tempfile.mkdtemp(), progress=False)
        >>> data.sample().batch_size
        torch.Size([4, 10])
        >>> len(data), len(data.storage)  # 2 episodes of 30 steps: 60 transitions, stored as 62 frames
        (60, 62)
    """

    def __init__(
        self,
        folders: str | Path | Sequence[str | Path],
        *,
        horizon: int = 50,
        batch_size: int = 50,
        num_episodes: int | None = None,
        episodes: Sequence[int] | None = None,
        root: str | Path | None = None,
        rebuild: bool = False,
        transform: Callable | None = None,
        prefetch: int | None = None,
        progress: bool = True,
    ) -> None:
        if isinstance(folders, (str, Path)):
            folders = [folders]
        if not folders:
            raise ValueError("AIMEDataset needs at least one folder.")
        if horizon < 1 or batch_size < 1:
            raise ValueError(f"horizon and batch_size must be positive, got {horizon} and {batch_size}.")
        self.folders = [Path(f).expanduser().resolve() for f in folders]
        self.root = Path(root) if root is not None else default_root()
        files = dataset_files(self.folders, num_episodes)
        if episodes is not None:
            if not episodes or min(episodes) < 0 or max(episodes) >= len(files):
                raise ValueError(f"episodes must be non-empty indices below {len(files)}, got {list(episodes)[:10]}.")
            files = [files[i] for i in episodes]
        self.dataset_id = self._make_id(files)
        if rebuild or not self._is_downloaded():
            with file_lock(self.root / f"{self.dataset_id}.lock"):  # other processes may build it too
                if rebuild or not self._is_downloaded():
                    self._build(files, progress)
        meta = json.loads((self.data_path / "meta.json").read_text())
        self.files = meta["files"]
        self.episode_returns = meta["returns"]
        self.episode_lengths = meta["lengths"]
        short = [f for f, n in zip(self.files, self.episode_lengths) if n < horizon]
        if short:
            raise DatasetFormatError(
                f"{len(short)} episode(s) have fewer steps than the horizon {horizon}, e.g. {short[:3]}; "
                "use a shorter horizon or drop them."
            )
        self._data = TensorDict.load_memmap(self.data_path / "storage")
        super().__init__(
            horizon=horizon,
            batch_size=batch_size,
            frames=True,
            storage=TensorStorage(self._data),
            writer=ImmutableDatasetWriter(),
            transform=transform,
            prefetch=prefetch,
        )

    def __len__(self) -> int:
        """The number of transitions (steps) of the episodes; the storage holds one frame more per episode."""
        return sum(self.episode_lengths)

    @property
    def sensors(self) -> dict[str, tuple[int, ...]]:
        """The observations of the episodes (name -> shape of one observation)."""
        return {k: tuple(v.shape[1:]) for k, v in self._data.items() if k not in (*FRAME_KEYS, "physics")
                and not hasattr(v, "keys")}

    @property
    def action_dim(self) -> int:
        return self._data.get("pre_action").shape[-1]

    def require(
        self,
        keys: Sequence[str] | Mapping[str, Sequence[int]],
        *,
        action_dim: int | None = None,
        embodiment: str | None = None,
        purpose: str = "",
    ) -> None:
        """Raises an error naming the problem unless the episodes have the sensors ``keys`` (of the
        shapes given, and actions of size ``action_dim``, and the sensors of ``embodiment``): the
        checks of a model's data before any training.

        Args:
            keys (Sequence[str] or Mapping[str, shape]): the sensors a model reads, or each with the
                shape of one frame it reads (e.g. ``world_model.sensor_shapes()``).

        Keyword Args:
            action_dim (int, optional): the size of the actions, checked if given.
            embodiment (str, optional): ``"walker"`` or ``"cheetah"``: episodes of another
                embodiment (told by their sensors) are rejected.
            purpose (str, optional): what the data is for, to say in the message.
        """
        from aime_torchrl.envs.dmc import infer_embodiment

        where = ", ".join(str(f) for f in self.folders)
        sensors = self.sensors
        found = infer_embodiment(sensors)
        if embodiment is not None and found is not None and found != embodiment:
            raise ValueError(
                f"{where} holds {found} episodes (sensors {sorted(sensors)}), but {purpose or 'the data'} must be "
                f"{embodiment} episodes (embodiment={embodiment})."
            )
        missing = [k for k in keys if k not in sensors]
        if missing:
            hint = ""
            if "pixels" in missing:
                hint = (" Images can be added to a dataset with physics states by aime_torchrl.data.render_images, "
                        "or built with images: python -m aime_torchrl.data.builder <name> --images.")
            raise KeyError(
                f"{where} lacks the sensors {missing} needed by {purpose or 'the model'} (it has {sorted(sensors)}).{hint}"
            )
        if isinstance(keys, Mapping):
            for key, shape in keys.items():
                if tuple(sensors[key]) != tuple(shape):
                    fix = ("render the images at that size (aime_torchrl.data.render_images, or the builder's --images)"
                           if key == "pixels" else "use data of this embodiment and setup, or a model built for it")
                    raise ValueError(
                        f"{where}: the sensor {key!r} has shape {tuple(sensors[key])} per frame, but {purpose or 'the model'} "
                        f"reads {tuple(shape)}: {fix}."
                    )
        if action_dim is not None and self.action_dim != action_dim:
            raise ValueError(
                f"{where} has {self.action_dim}-d actions, but {purpose or 'the model'} expects {action_dim}-d actions."
            )

    @property
    def data_path_root(self) -> Path:
        return self.root / self.dataset_id

    @property
    def data_path(self) -> Path:
        return self.data_path_root

    def _is_downloaded(self) -> bool:
        return (self.data_path / "meta.json").exists()

    @property
    def num_episodes(self) -> int:
        return len(self.files)

    @staticmethod
    def _make_id(files: list[Path]) -> str:
        digest = hashlib.sha1(f"v{FORMAT_VERSION};".encode())
        for f in files:
            stat = f.stat()
            digest.update(f"{f}:{stat.st_size}:{stat.st_mtime_ns};".encode())
        names = "+".join(dict.fromkeys(f.parent.name for f in files))
        return f"{names[:80]}-{len(files)}-{digest.hexdigest()[:12]}"

    def _build(self, files: list[Path], progress: bool) -> None:
        frames, keys = [], []
        for f in files:  # pass 1, cheap: the entries and one small array per file, to size the storage
            try:
                with np.load(f) as data:
                    frames.append(len(data["pre_action"]) if "pre_action" in data.files else 0)
                    keys.append(set(data.files))
            except Exception as err:
                raise DatasetFormatError(f"{f}: not a readable .npz file ({err}).") from err
        tmp = self.data_path.with_name(f"{self.data_path.name}.building-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        # Merged folders may carry extra entries (e.g. a concatenated "observation"): keep what all share.
        # A file lacking an entry of the format is refused, by name, when it is read (pass 2).
        common = set.intersection(*keys) | set(RESERVED)
        extra = sorted(set.union(*keys) - common)
        if extra:
            warnings.warn(f"Entries {extra} are not in every episode of {[str(f) for f in self.folders]}; they are left out.")
        try:
            self._write(files, sum(frames), common, tmp, progress)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # no half-built storage left behind
            raise
        shutil.rmtree(self.data_path, ignore_errors=True)
        tmp.replace(self.data_path)

    def _write(self, files: list[Path], total: int, keys: set[str], tmp: Path, progress: bool) -> None:
        """Pass 2: every file is read and checked (:func:`~aime_torchrl.data.npz.load_episode`, the
        only check of its arrays) and its frames written."""
        storage, reference, returns, lengths, start = None, None, [], [], 0
        for index, f in enumerate(tqdm(files, desc=f"building {self.dataset_id}", disable=not progress)):
            frames = episode_to_frames({k: v for k, v in load_episode(f).items() if k in keys}, index)
            layout = {k: (v.shape[1:], v.dtype) for k, v in frames.items(True, True)}
            if reference is None:
                reference = (f, layout)
                storage = frames[0].expand(total).memmap_like(tmp / "storage")
            elif layout != reference[1]:
                diff = sorted(str(k) for k in set(layout.items()) ^ set(reference[1].items()))
                raise DatasetFormatError(
                    f"{f}: sensors, shapes or dtypes differ from {reference[0]} (e.g. {diff[:4]}); "
                    "all episodes of a dataset must have the same keys and action size."
                )
            storage[start : start + len(frames)] = frames
            start += len(frames)
            lengths.append(len(frames) - 1)
            returns.append(float(frames.get("reward")[1:].sum()))
            if not np.isfinite(returns[-1]):
                raise DatasetFormatError(f"{f}: its rewards sum to {returns[-1]} in float32 (too large to score with).")
        meta = {"files": [str(f) for f in files], "lengths": lengths, "returns": returns}
        (tmp / "meta.json").write_text(json.dumps(meta))
