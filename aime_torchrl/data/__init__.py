# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
from aime_torchrl.data.collect import collect_episodes, GaussianActionNoise, UniformRandomPolicy
from aime_torchrl.data.builder import build_dataset, dataset_folders, open_dataset, render_images, resolve_datasets
from aime_torchrl.data.dataset import AIMEDataset, default_root
from aime_torchrl.data.mixture import WindowMixture
from aime_torchrl.data.trajectories import TrajectoryWriter
from aime_torchrl.data.labelled import LabelledMixture, pseudo_label, split_held_out, split_labelled
from aime_torchrl.data.latents import posterior_latents
from aime_torchrl.data.npz import (DatasetFormatError, episode_files, episode_to_frames, episode_to_td, frames_to_transitions,
                                   load_episode, load_episodes, save_episode, td_to_episode)
from aime_torchrl.data.replay import make_window_buffer, WindowReplayBuffer, WindowSampler
from aime_torchrl.data.synthetic import LinearControlSystem
from aime_torchrl.data.vd4rl import convert_vd4rl, open_vd4rl
from torchrl.data.datasets import register_dataset

# TorchRL's registry: load_dataset("aime:walker-stand-expert", horizon=32, batch_size=8) opens (and if this project
# can make it, builds) a dataset by name or folder; "aime_vd4rl:<folder>" converts V-D4RL files once and opens them.
register_dataset("aime", "aime_torchrl.data.builder:open_dataset", replace=True)
register_dataset("aime_vd4rl", "aime_torchrl.data.vd4rl:open_vd4rl", replace=True)

__all__ = [
    "WindowMixture",
    "WindowReplayBuffer",
    "WindowSampler",
    "TrajectoryWriter",
    "AIMEDataset",
    "DatasetFormatError",
    "GaussianActionNoise",
    "LabelledMixture",
    "LinearControlSystem",
    "UniformRandomPolicy",
    "build_dataset",
    "collect_episodes",
    "convert_vd4rl",
    "dataset_folders",
    "default_root",
    "episode_files",
    "episode_to_frames",
    "episode_to_td",
    "frames_to_transitions",
    "load_episode",
    "load_episodes",
    "make_window_buffer",
    "open_dataset",
    "open_vd4rl",
    "posterior_latents",
    "pseudo_label",
    "render_images",
    "resolve_datasets",
    "save_episode",
    "split_held_out",
    "split_labelled",
    "td_to_episode",
]
