# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
from aime_torchrl.objectives.adversarial import AdversarialRewardLoss
from aime_torchrl.objectives.aime import AIMELoss
from aime_torchrl.objectives.bc import BCLoss
from aime_torchrl.objectives.dynamics_ensemble import DynamicsEnsembleLoss
from aime_torchrl.objectives.functional import balanced_kl, categorical_kl, free_nats_kl, gaussian_kl, latent_kl, LATENTS
from aime_torchrl.objectives.iidm import ForwardModelLoss, IIDMLoss
from aime_torchrl.objectives.latent_action import LatentActionLoss
from aime_torchrl.objectives.offline_policy import OfflinePolicyLoss
from aime_torchrl.objectives.reward import RewardLoss
from aime_torchrl.objectives.window_elbo import elbo_terms, window_elbo
from aime_torchrl.objectives.world_model import LOSS_PRESETS, WorldModelLoss

__all__ = [
    "AdversarialRewardLoss",
    "AIMELoss",
    "BCLoss",
    "DynamicsEnsembleLoss",
    "ForwardModelLoss",
    "IIDMLoss",
    "LatentActionLoss",
    "OfflinePolicyLoss",
    "RewardLoss",
    "LOSS_PRESETS",
    "WorldModelLoss",
    "LATENTS",
    "balanced_kl",
    "categorical_kl",
    "elbo_terms",
    "window_elbo",
    "free_nats_kl",
    "gaussian_kl",
    "latent_kl",
]
