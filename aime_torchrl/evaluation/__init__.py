# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Evaluation in the real environment: returns, normalised scores, videos, plots."""
from aime_torchrl.envs.scores import normalised_score, REFERENCE_EXPERT_RETURNS
from aime_torchrl.evaluation.diagnostics import (
    action_inference_diagnostics, ImitationDiagnostics, state_coverage, world_model_diagnostics,
)
from aime_torchrl.evaluation.plots import plot_curves, plot_grid, plot_scores
from aime_torchrl.evaluation.latent_action import label_efficiency_report, latent_action_diagnostics, policy_efficiency_report
from aime_torchrl.evaluation.prediction import open_loop_errors, open_loop_prediction
from aime_torchrl.evaluation.report import save_results, score_report
from aime_torchrl.evaluation.rollouts import episode_returns, record_episode, seeded_episode_returns
from aime_torchrl.evaluation.video import imitation_videos, save_gif, side_by_side

__all__ = [
    "action_inference_diagnostics",
    "ImitationDiagnostics",
    "imitation_videos",
    "label_efficiency_report",
    "policy_efficiency_report",
    "REFERENCE_EXPERT_RETURNS",
    "episode_returns",
    "normalised_score",
    "latent_action_diagnostics",
    "open_loop_errors",
    "open_loop_prediction",
    "plot_curves",
    "plot_grid",
    "plot_scores",
    "record_episode",
    "save_gif",
    "save_results",
    "score_report",
    "seeded_episode_returns",
    "side_by_side",
    "state_coverage",
    "world_model_diagnostics",
]
