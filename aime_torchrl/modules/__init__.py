# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
from aime_torchrl.modules.core import DreamerV3Core, KeyedCore, make_actor, RSSMCore, WorldModelCore
from aime_torchrl.modules.decoders import CNNDecoder, GaussianMLPDecoder, make_decoder
from aime_torchrl.modules.encoders import CNNEncoder, ObservationEncoder
from aime_torchrl.modules.discriminator import AdversarialReward, make_adversarial_reward, make_discriminator
from aime_torchrl.modules.dynamics_ensemble import DynamicsEnsemble, make_dynamics_ensemble
from aime_torchrl.modules.filter_actor import FilteringActor
from aime_torchrl.modules.fused_filter import fused_observe, FusedRSSMFilter
from aime_torchrl.modules.fused_v3_filter import fused_v3_observe, FusedV3Filter
from aime_torchrl.modules.imagination import make_imagination_env, make_reward_model, PriorStep
from aime_torchrl.modules.frozen_view import frozen, FrozenView
from aime_torchrl.modules.frame_stack import frame_stack_transform, FrameStackMLP, make_stack_module, stack_window
from aime_torchrl.modules.mlp import make_mlp
from aime_torchrl.modules.latent import CategoricalLatent, categorical_mode, GaussianLatent
from aime_torchrl.modules.policy import make_policy, TanhGaussianActor, TanhGaussianPolicyNet, TensorActor
from aime_torchrl.modules.rollout import PosteriorRollout
from aime_torchrl.modules.rssm import GaussianHead, RSSMTransition
from aime_torchrl.modules.keys import LatentKeys
from aime_torchrl.modules.latent_action import LATENT_ACTION_KEYS, LatentActionWorldModel
from aime_torchrl.modules.latent_action_actor import LatentActionFilteringActor
from aime_torchrl.modules.world_model import RSSMWorldModel, WORLD_MODEL_PRESETS

__all__ = [
    "AdversarialReward",
    "make_adversarial_reward",
    "make_discriminator",
    "CNNDecoder",
    "CategoricalLatent",
    "DreamerV3Core",
    "GaussianLatent",
    "KeyedCore",
    "RSSMCore",
    "TanhGaussianActor",
    "TensorActor",
    "WorldModelCore",
    "make_actor",
    "CNNEncoder",
    "DynamicsEnsemble",
    "FilteringActor",
    "FrameStackMLP",
    "FrozenView",
    "FusedRSSMFilter",
    "fused_observe",
    "FusedV3Filter",
    "fused_v3_observe",
    "GaussianHead",
    "GaussianMLPDecoder",
    "LATENT_ACTION_KEYS",
    "LatentActionFilteringActor",
    "LatentActionWorldModel",
    "LatentKeys",
    "ObservationEncoder",
    "PosteriorRollout",
    "PriorStep",
    "RSSMTransition",
    "RSSMWorldModel",
    "TanhGaussianPolicyNet",
    "WORLD_MODEL_PRESETS",
    "categorical_mode",
    "frame_stack_transform",
    "frozen",
    "make_decoder",
    "make_dynamics_ensemble",
    "make_imagination_env",
    "make_mlp",
    "make_policy",
    "make_reward_model",
    "make_stack_module",
    "stack_window",
]
