# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type

from aime_torchrl import WorldModelLoss
from aime_torchrl.modules import CNNDecoder, CNNEncoder, GaussianHead, make_policy, ObservationEncoder, RSSMWorldModel
from conftest import DEVICES, make_window, small_world_model


def test_rollout_matches_the_recurrence_by_hand():
    wm = small_world_model({"observation": 4})
    window = make_window(time=5)
    torch.manual_seed(3)
    frames = wm(wm.to_frames(window))

    transition = wm.transition.module
    posterior, prior = wm.posterior.module, wm.prior.module
    obs = torch.cat([window["observation"][:, :1], window["next", "observation"]], 1)
    actions = torch.cat([torch.zeros(3, 1, 2), window["action"]], 1)  # a_{-1} = 0 for frame 0
    state, belief = torch.zeros(3, wm.state_dim), torch.zeros(3, wm.belief_dim)
    torch.manual_seed(3)
    for t in range(6):
        belief = transition(state, belief, actions[:, t])
        mean, std, state = posterior(belief, obs[:, t])  # identity encoder
        prior_mean, prior_std = prior(belief)
        torch.testing.assert_close(frames["next", "belief"][:, t], belief)
        torch.testing.assert_close(frames["next", "state"][:, t], state)
        torch.testing.assert_close(frames["next", "posterior_std"][:, t], std)
        torch.testing.assert_close(frames["next", "prior_mean"][:, t], prior_mean)
        torch.testing.assert_close(frames["next", "prior_std"][:, t], prior_std)
    # Row t + 1 carries the latent state of frame t at its root: TorchRL's (s_t, h_t, a_t) row.
    torch.testing.assert_close(frames["belief"][:, 1:], frames["next", "belief"][:, :-1])
    torch.testing.assert_close(frames["action"][:, 1:], window["action"])


def test_to_frames_layout_and_errors():
    wm = small_world_model({"observation": 4})
    window = make_window(time=4)
    frames = wm.to_frames(window)
    assert frames.batch_size == torch.Size([3, 5])
    torch.testing.assert_close(frames["next", "observation"][:, 0], window["observation"][:, 0])
    torch.testing.assert_close(frames["next", "observation"][:, 1:], window["next", "observation"])
    assert (frames["action"][:, 0] == 0).all()
    assert (wm.to_frames(window, with_actions=False)["action"] == 0).all()
    with pytest.raises(ValueError, match="time dimension"):
        wm.to_frames(window[:, 0][0])
    with pytest.raises(ValueError, match="Unknown world model"):
        RSSMWorldModel.from_config({"observation": 4}, 2, variant="rssm2")
    with pytest.raises(TypeError, match="Unknown world model options"):
        RSSMWorldModel.from_config({"observation": 4}, 2, deter=3)


def test_reference_network_shapes():
    pixels = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    embedding = CNNEncoder()(pixels)
    assert embedding.shape == (2, 1024)
    # uint8 is scaled to [0, 1] inside: the same as feeding floats.
    encoder = CNNEncoder()
    torch.testing.assert_close(encoder(pixels), encoder(pixels.float() / 255))
    image = CNNDecoder(640)(torch.randn(2, 640))
    assert image.shape == (2, 3, 64, 64) and image.min() >= 0 and image.max() <= 1
    encoder = ObservationEncoder({"a": 3, "b": 2}, ["pixels"])
    out = encoder(torch.ones(2, 3), 2 * torch.ones(2, 2), pixels)
    assert encoder.embedding_dim == out.shape[-1] == 5 + 1024
    torch.testing.assert_close(out[:, :5], torch.tensor([[1.0, 1, 1, 2, 2]] * 2))
    mean, std = GaussianHead(4, 3, min_std=0.1, std_mapping="sigmoid", layers=1, hidden=8)(torch.randn(5, 4))
    assert (std >= 0.1).all() and (std <= 2.1).all()


@pytest.mark.parametrize("device", DEVICES)
def test_policy_modes(device):
    policy = make_policy(4, 6, 2, hidden=8, device=device)
    td = TensorDict({"state": torch.randn(5, 4, device=device), "belief": torch.randn(5, 6, device=device)}, [5])
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        out = policy(td.clone())
    torch.testing.assert_close(out["action"], out["loc"].tanh())
    with set_exploration_type(ExplorationType.RANDOM):
        sample = policy(td.clone())["action"]
    assert sample.requires_grad and sample.abs().max() <= 1
    assert not torch.allclose(sample, out["action"])


def test_rssmo_structure_and_std_mappings():
    """The reference's RSSMO layers (Linear -> LayerNorm -> SiLU), one-hidden-layer heads, std = 2 sigmoid(x/2) + 0.1."""
    wm = RSSMWorldModel.from_config({"position": 8, "velocity": 9}, 6, variant="rssmo")
    assert (wm.belief_dim, wm.state_dim) == (512, 30)
    names = lambda m: [type(x).__name__ for x in m]  # noqa: E731
    assert names(wm.transition.module.input_layer) == ["Linear", "LayerNorm", "SiLU"]
    assert names(wm.prior.module.net) == ["Linear", "LayerNorm", "SiLU", "Linear"]
    assert wm.posterior.module.net[0].in_features == 512 + 512  # belief + the 512-d MLP embedding
    assert names(wm.encoder.module.vector_net) == ["Linear", "LayerNorm", "SiLU", "Linear", "LayerNorm", "SiLU"]
    decoder = wm.decoders["velocity"][0].module
    assert decoder.std is None and names(decoder.mean) == ["Linear", "LayerNorm", "SiLU"] * 2 + ["Linear"]

    head = GaussianHead(4, 3, layers=1, hidden=8, std_mapping="sigmoid", min_std=0.1)
    torch.nn.init.zeros_(head.net[-1].weight)
    torch.nn.init.constant_(head.net[-1].bias, 1.0)
    mean, std = head(torch.randn(5, 4))
    torch.testing.assert_close(std, torch.full((5, 3), 2 * torch.sigmoid(torch.tensor(0.5)).item() + 0.1))
    head = GaussianHead(4, 3, hidden=8, min_std=1e-6)
    torch.nn.init.zeros_(head.std[-1].weight)
    torch.nn.init.constant_(head.std[-1].bias, -2.0)
    expected = torch.nn.functional.softplus(torch.tensor(-2.0)).item() + 1e-6
    torch.testing.assert_close(head(torch.randn(5, 4))[1], torch.full((5, 3), expected))

    rssm = RSSMWorldModel.from_config({"orientations": 14, "height": 1, "velocity": 9}, 6)
    assert (rssm.belief_dim, rssm.state_dim) == (512, 128)
    assert rssm.transition.module.gru.input_size == 128 + 6  # [s, a] straight into the GRU
    assert names(rssm.prior.module.mean) == ["Linear", "ELU", "Linear", "ELU", "Linear"]
    assert type(CNNEncoder().net[-1]).__name__ == "Conv2d"  # no activation after the last conv


def test_float64_world_model():
    wm = small_world_model().double()
    window = make_window().apply(lambda x: x.double() if x.is_floating_point() else x)
    frames = wm(wm.to_frames(window))
    assert frames["next", "state"].dtype == torch.float64
    assert WorldModelLoss(wm)(window)["elbo"].dtype == torch.float64
