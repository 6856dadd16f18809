# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The run folder of a Hydra app: config (checked: :func:`check_config`), resumption, device, logger,
checkpoints and lock in one place.

Hydra is an optional dependency (the ``examples`` extra): it is imported when a run starts.
"""
from __future__ import annotations

import atexit
import fnmatch
import importlib.util
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TYPE_CHECKING

import torch
from torch import nn
from torchrl.record.loggers import CSVLogger, get_logger, Logger, TensorboardLogger

from aime_torchrl.trainers.checkpoint import flat, rng_state, RunCheckpoint, set_rng_state
from aime_torchrl.trainers.device import resolve_device
from aime_torchrl.trainers.distributed import DistributedContext, init_distributed
from aime_torchrl.trainers.lock import RunLock
from aime_torchrl.trainers.offline import OfflineLoop

if TYPE_CHECKING:
    from omegaconf import DictConfig


@dataclass
class Run:
    """A started run (see :func:`start_run`).

    Attributes:
        cfg (DictConfig): the run's config (a resumed run's own, see :meth:`RunCheckpoint.resume_config`).
        folder (Path): the run folder.
        checkpoint (RunCheckpoint): ``<folder>/checkpoint.pt``.
        device (torch.device): ``cfg.device``, ``"auto"`` being CUDA when there is one (see :func:`resolve_device`).
        logger (Logger, optional): the TorchRL logger of ``cfg.logger`` (``None`` without a backend),
            writing into ``<folder>/logs`` (a resumed run's logs continue where it now lives).
        resumed (dict, optional): the saved state when the run resumes.
        results (dict, optional): ``results.json`` of a finished run that was asked to resume: nothing is left to do.
        lock (RunLock, optional): ``<folder>/.lock``, held until the process ends (or ``lock.release()``);
            ``None`` for a finished run asked to resume (nothing is written).
        distributed (DistributedContext): where this process stands in a ``torchrun`` launch (one
            process otherwise): rank 0 alone writes the folder, logs and checkpoints.
    """

    cfg: DictConfig
    folder: Path
    checkpoint: RunCheckpoint
    device: torch.device
    logger: Logger | None = None
    resumed: dict[str, Any] | None = None
    results: dict[str, Any] | None = None
    lock: RunLock | None = None
    distributed: DistributedContext = field(default_factory=DistributedContext)

    @property
    def resumed_stage(self) -> str | None:
        return self.resumed["stage"] if self.resumed else None

    def restore(self, stage: str, modules: Mapping[str, nn.Module],
                optimizers: Mapping[str, torch.optim.Optimizer] | None = None) -> int:
        """The steps already done in ``stage``: when the run resumes in it, ``modules`` and
        ``optimizers`` get their saved states back, and every rank its random state (a data-parallel run
        resumed on as many ranks as it was saved from continues exactly; on another number of ranks, the
        ranks but the first reseed theirs from the step), else 0."""
        if self.resumed_stage != stage:
            return 0
        self.checkpoint.restore(self.resumed, modules=modules, optimizers=optimizers)
        ranks = self.resumed.get("rank_rng") or []
        if len(ranks) == self.distributed.world_size:
            set_rng_state(ranks[self.distributed.rank])
        elif not self.distributed.is_main:  # each rank draws its own windows
            torch.manual_seed(self.distributed.seed(self.cfg.seed + self.resumed["step"]))
        return self.resumed["step"]

    def save(self, stage: str, step: int, modules: Mapping[str, nn.Module | None],
             optimizers: Mapping[str, torch.optim.Optimizer] | None = None, **extra: Any) -> None:
        """Checkpoints the run after ``step`` steps of ``stage`` (see :meth:`RunCheckpoint.save`); ``extra`` are
        saved with it (e.g. an online replay buffer's content), back in ``run.resumed``. Every rank calls it:
        rank 0 writes, with every rank's random state."""
        from omegaconf import OmegaConf

        if self.distributed.enabled:
            extra["rank_rng"] = self.distributed.gather(rng_state())
        if not self.distributed.is_main:
            return
        self.checkpoint.save(OmegaConf.to_container(self.cfg), stage, step, modules=modules, optimizers=optimizers,
                             logger=self.logger, **extra)

    def loop(self, stage: str, modules: Mapping[str, nn.Module], optimizer: torch.optim.Optimizer, *,
             checkpoint_every: int, on_step: Callable[[int, bool], None] | None = None, **loop: Any) -> OfflineLoop:
        """The :class:`~aime_torchrl.trainers.OfflineLoop` of ``stage``: it starts where the run
        stopped (``modules`` and ``optimizer`` restored when the run resumes in ``stage``), calls
        ``on_step`` and then checkpoints every ``checkpoint_every`` steps, at the last one and when
        interrupted; ``loop`` are the loop's other keyword arguments (``steps``, ``logger``, ...)."""
        optimizers = {"optimizer": optimizer}
        start = self.restore(stage, modules, optimizers)

        def step_done(done: int, last: bool) -> None:
            if on_step is not None:
                on_step(done, last)
            if last or done % checkpoint_every == 0:
                self.save(stage, done, modules, optimizers)

        if not self.distributed.is_main:
            loop["progress"] = False
        return OfflineLoop(optimizer, start=start, on_step=step_done, distributed=self.distributed, **loop)


def _discard_hydra_folder(folder: Path) -> None:
    """Removes ``folder`` when it holds nothing but what Hydra wrote into it as the app started (its
    ``output_subdir`` and job log, when ``hydra.run.dir`` is the run folder): a run refused before it
    starts leaves no folder behind."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() or not folder.is_dir():
        return
    hydra_cfg = HydraConfig.get()
    if Path(hydra_cfg.runtime.output_dir).resolve() == folder.resolve() and {p.name for p in folder.iterdir()} <= {
            f"{hydra_cfg.job.name}.log", hydra_cfg.output_subdir}:
        shutil.rmtree(folder)


def _finished(cfg: DictConfig, folder: Path, checkpoint: RunCheckpoint, resumed: dict[str, Any],
              lock: RunLock | None = None) -> Run:
    """The :class:`Run` of a finished run asked to resume: its results, nothing left to do."""
    print(f"{folder} is finished (results.json): nothing to resume.")
    return Run(cfg, folder, checkpoint, torch.device("cpu"), resumed=resumed,
               results=json.loads((folder / "results.json").read_text()), lock=lock)


def start_run(
    cfg: DictConfig,
    config_name: str,
    *,
    resumable: Sequence[str] = (),
    check: Callable[[DictConfig], None] | None = None,
    train_on: Callable[[DictConfig, dict[str, Any]], bool] | None = None,
) -> Run:
    """Starts or resumes the run of a Hydra app in ``cfg.out_dir``.

    With ``cfg.resume`` the run continues with its own saved config: only the keys that start with
    one of ``resumable`` may be changed on the command line (``resume=true out_dir=<run>`` is
    enough, wherever the folder has moved); a folder without a run is refused, and a finished run
    (``results.json``) returns its results, unless ``train_on(cfg, results)`` says the command line
    asks for more (a raised budget of a resumable key: it continues from its last checkpoint and
    writes its results again at its end). Without it (or without a ``resume`` key), a folder that
    already holds a run is refused. ``check(cfg)`` and the device (``cfg.device``, see
    :func:`resolve_device`) are checked before anything is written: a run refused then leaves no
    folder (but one that held something before Hydra wrote into it). The folder is then locked for
    the life of the process (:class:`RunLock`: a second run, or a resumed one, on a folder in use is
    refused at once, naming the process that holds it; under torchrun, rank 0 alone takes it) before
    it is looked at, so that of two runs started at once in one folder, one is refused; then
    ``config.yaml`` is saved, torch's threads (``cfg.threads``, if set) and seed (``cfg.seed``) are
    set and the logger (``cfg.logger.backend``: csv, tensorboard, wandb, ...) is made.

    Under ``torchrun`` (:func:`~aime_torchrl.trainers.init_distributed`; ``cfg.distributed_timeout_s``,
    default 1800, bounds a wait for a rank that died) every rank runs in rank 0's folder; rank 0 alone
    locks it, writes its config and logs (``run.logger`` is ``None`` elsewhere), and each rank seeds
    torch with :meth:`~aime_torchrl.trainers.DistributedContext.seed` (its own windows). A refused
    run stops every rank.

    Examples:
        >>> import tempfile
        >>> from omegaconf import OmegaConf
        >>> folder = tempfile.mkdtemp()
        >>> cfg = OmegaConf.create({"out_dir": folder + "/run", "resume": False, "seed": 0, "device": "cpu",
        ...                         "logger": {"backend": None}})
        >>> run = start_run(cfg, "app")  # doctest: +ELLIPSIS
        run folder: .../run
        >>> run.folder.name, run.resumed_stage, (run.folder / "config.yaml").is_file(), run.lock.held
        ('run', None, True, True)
        >>> start_run(cfg, "app")  # the folder is in use while this process lives
        Traceback (most recent call last):
        ...
        aime_torchrl.trainers.lock.RunLockedError: .../run is in use by another run (pid ...): wait for that run ...
    """
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    folder = Path(hydra.utils.to_absolute_path(cfg.out_dir))

    def finished(cfg: DictConfig) -> bool:
        file = folder / "results.json"
        return file.exists() and not (train_on is not None and train_on(cfg, json.loads(file.read_text())))

    checkpoint = RunCheckpoint(folder)
    lock = RunLock(folder)
    resumed = None
    if cfg.get("resume"):
        if not checkpoint.exists():
            _discard_hydra_folder(folder)
            raise FileNotFoundError(f"resume=true: {folder} holds no run to continue (no checkpoint.pt): pass the "
                                    "out_dir of a run, or drop resume=true to start a new one.")
        resumed = checkpoint.load()
        defaults = OmegaConf.to_container(hydra.compose(config_name=config_name))
        explicit = ([o.split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.task]
                    if HydraConfig.initialized() else None)  # the command line's keys (None: from the compose API)
        cfg = OmegaConf.create(checkpoint.resume_config(resumed["config"], OmegaConf.to_container(cfg), defaults,
                                                        resumable, explicit))
        if finished(cfg):  # nothing is written: no lock needed
            return _finished(cfg, folder, checkpoint, resumed)
    try:
        if check is not None:
            check(cfg)
        device = resolve_device(cfg.device)
    except Exception:
        _discard_hydra_folder(folder)
        raise
    distributed = init_distributed(device, timeout_s=cfg.get("distributed_timeout_s") or 1800.0)
    if distributed.enabled:  # every rank runs in rank 0's folder (Hydra's ${now:...} differs between ranks)
        shared = Path(distributed.share(str(folder)))
        if shared != folder:
            _discard_hydra_folder(folder)
            folder, checkpoint = shared, RunCheckpoint(shared)
        if resumed is not None:
            cfg = OmegaConf.create(distributed.share(OmegaConf.to_container(cfg)))
    failure = None
    if distributed.is_main:
        try:
            lock.acquire()  # before the folder is looked at (again): of two runs started at once in one folder, one is refused
            if resumed is None and checkpoint.exists():
                raise FileExistsError(f"{folder} already holds a run: pass resume=true to continue it, or another out_dir.")
        except Exception as error:
            failure = error
    if distributed.any_rank(failure is not None):  # rank 0 refused the run: every rank stops
        raise failure or RuntimeError(f"rank 0 refused the run in {folder} (its error says why).")
    if resumed is not None:  # read again, held: the run may have gone on, or finished, since
        resumed = checkpoint.load()
        if finished(cfg):
            return _finished(cfg, folder, checkpoint, resumed, lock)
    if cfg.get("threads"):
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(distributed.seed(cfg.seed))  # each rank samples its own windows
    logger = None
    if distributed.is_main:
        folder.mkdir(parents=True, exist_ok=True)  # made by the lock, but where it is disabled
        OmegaConf.save(cfg, folder / "config.yaml")
        if cfg.logger.backend:
            wandb = cfg.logger.backend == "wandb"
            state = checkpoint.logger_state(resumed, folder / "logs") if resumed and not wandb else None
            if cfg.logger.backend == "csv":  # get_logger's csv writes mp4 videos, which need torchcodec
                video_format = "mp4" if importlib.util.find_spec("torchcodec") else "pt"
                name, log_dir = (state["exp_name"], state["log_dir"]) if state else (folder.name, str(folder / "logs"))
                logger = CSVLogger(name, log_dir=log_dir, video_format=video_format)
                if state is not None:  # the saved experiment's counters, as get_logger(state_dict=...)
                    logger.load_state_dict(state)
            else:
                logger = get_logger(
                    cfg.logger.backend, logger_name=str(folder / "logs"), experiment_name=folder.name, state_dict=state,
                    wandb_kwargs=dict(offline=cfg.logger.get("mode") == "offline", project=cfg.logger.get("project")),
                )
            if isinstance(logger, TensorboardLogger):  # its writer flushes every 2 minutes: the last events at exit
                atexit.register(logger.experiment.close)
            logger.log_hparams(flat_hparams(OmegaConf.to_container(cfg, resolve=True)))
        print(f"run folder: {folder}" + (f" ({distributed.world_size} ranks)" if distributed.enabled else ""))
    return Run(cfg, folder, checkpoint, distributed.device, logger, resumed, lock=lock, distributed=distributed)


def flat_hparams(config: Mapping[str, Any], prefix: str = "") -> dict[str, int | float | str | bool]:
    """A nested config as the flat scalars every TorchRL logger takes (TensorBoard's ``add_hparams`` refuses
    nesting, ``None`` and lists): ``{"phase1.steps": 3000, "fractions": "[0.01, 0.1]", "threads": "None"}``.

    Examples:
        >>> flat_hparams({"seed": 0, "phase1": {"steps": 3000, "world_model": None}, "fractions": [0.01, 0.1]})
        {'seed': 0, 'phase1.steps': 3000, 'phase1.world_model': 'None', 'fractions': '[0.01, 0.1]'}
    """
    flat = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(flat_hparams(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def check_config(
    config: Mapping[str, Any],
    *,
    positive: Sequence[str] = (),
    non_negative: Sequence[str] = (),
    choices: Mapping[str, Sequence[Any]] | None = None,
    non_empty: Sequence[str] = (),
) -> None:
    """Refuses a config before anything runs: every key of ``positive`` must be a number > 0, of
    ``non_negative`` >= 0 (``None`` passes both: "not set"), of ``choices`` one of its values, and
    of ``non_empty`` a list (or string) of at least one item; the error names the key, the value and
    what is allowed (keys are dotted: ``"phase1.steps"``). Keys of ``positive`` and ``non_negative``
    may be glob patterns (``"*.lr"``, ``"*"``): a pattern checks the numbers it matches and leaves
    other values (strings, booleans, lists) alone; the first key or pattern that matches decides.

    Examples:
        >>> check_config({"phase1": {"steps": -3}}, non_negative=["phase1.steps"])
        Traceback (most recent call last):
        ...
        ValueError: phase1.steps=-3: must be a number >= 0 (e.g. phase1.steps=0 skips it).
        >>> check_config({"phase1": {"lr": 0.0, "name": "x"}}, positive=["*.lr"], non_negative=["*"])
        Traceback (most recent call last):
        ...
        ValueError: phase1.lr=0.0: must be a number > 0.
        >>> check_config({"setup": "foo"}, choices={"setup": ["mdp", "lpomdp", "visual"]})
        Traceback (most recent call last):
        ...
        ValueError: setup='foo' is not one of 'mdp', 'lpomdp', 'visual'.
        >>> check_config({"seeds": []}, non_empty=["seeds"])
        Traceback (most recent call last):
        ...
        ValueError: seeds=[]: must list at least one value.
    """
    values = flat(config)
    for key, allowed in (choices or {}).items():
        if values.get(key) not in allowed:
            raise ValueError(f"{key}={values.get(key)!r} is not one of {', '.join(repr(a) for a in allowed)}.")
    for key in non_empty:
        value = values.get(key)
        if not isinstance(value, Sequence) or len(value) == 0:
            raise ValueError(f"{key}={value!r}: must list at least one value.")
    rules = [(pattern, "> 0") for pattern in positive] + [(pattern, ">= 0") for pattern in non_negative]
    for key, value in values.items():
        rule = next(((pattern, low) for pattern, low in rules if fnmatch.fnmatchcase(key, pattern)), None)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if rule is None or value is None or (not number and rule[0] != key):
            continue
        low = rule[1]
        if not number or not (value > 0 if low == "> 0" else value >= 0):
            hint = f" (e.g. {key}=0 skips it)" if low == ">= 0" and key.endswith("steps") else ""
            raise ValueError(f"{key}={value!r}: must be a number {low}{hint}.")
