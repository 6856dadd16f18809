# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
from aime_torchrl.trainers.checkpoint import (
    flat,
    load_checkpoint,
    load_module,
    rng_state,
    save_checkpoint,
    save_module,
    RunCheckpoint,
    set_rng_state,
    unflat,
)
from aime_torchrl.trainers.device import resolve_device
from aime_torchrl.trainers.distributed import DistributedContext, init_distributed
from aime_torchrl.trainers.hydra_run import check_config, Run, start_run
from aime_torchrl.trainers.lock import RunLock, RunLockedError
from aime_torchrl.trainers.guard import GuardedBackward, total_loss
from aime_torchrl.trainers.offline import deferred_interrupt, OfflineLoop, train_offline
from aime_torchrl.trainers.torchrl_trainer import AIMEOptimizationStepper, CallableStepper, OfflineCollector, train_with_trainer
from aime_torchrl.trainers.supervised import train_with_validation, validation_loss

__all__ = [
    "DistributedContext",
    "init_distributed",
    "AIMEOptimizationStepper",
    "CallableStepper",
    "OfflineCollector",
    "train_with_trainer",
    "GuardedBackward",
    "OfflineLoop",
    "Run",
    "RunCheckpoint",
    "RunLock",
    "RunLockedError",
    "check_config",
    "deferred_interrupt",
    "flat",
    "load_checkpoint",
    "load_module",
    "resolve_device",
    "rng_state",
    "save_checkpoint",
    "save_module",
    "set_rng_state",
    "start_run",
    "total_loss",
    "train_offline",
    "train_with_validation",
    "unflat",
    "validation_loss",
]
