# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""resolve_device: the device a config names, refused with the choices when this machine lacks it."""
from __future__ import annotations

import re

import pytest
import torch

from aime_torchrl.trainers import resolve_device


def cuda_devices(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def refused(spec: str, message: str, **kwargs) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve_device(spec, **kwargs)


def test_without_cuda_auto_is_the_cpu_and_cuda_is_refused(monkeypatch):
    cuda_devices(monkeypatch, 0)
    assert resolve_device("auto") == resolve_device("cpu") == torch.device("cpu")
    for spec in ("cuda", "cuda:0"):
        refused(spec, f"device={spec}: this machine has no CUDA device (torch {torch.__version__} ")
        refused(spec, "); pass device=auto (CUDA when there is one) or device=cpu.")
    refused("cuda", "--device=cuda: this machine has no CUDA device", key="--device")  # an argparse option


def test_with_cuda_auto_is_cuda_and_an_index_beyond_the_devices_is_refused(monkeypatch):
    cuda_devices(monkeypatch, 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    refused("cuda:2", "device=cuda:2: this machine has 2 CUDA devices (cuda:0, cuda:1); pass device=auto (CUDA when there "
                      "is one), device=cpu, device=cuda:0 or device=cuda:1.")
    cuda_devices(monkeypatch, 1)
    refused("cuda:1", "device=cuda:1: this machine has 1 CUDA device (cuda:0); pass device=auto (CUDA when there is one), "
                      "device=cpu or device=cuda:0.")


def test_a_string_that_is_no_device_is_refused(monkeypatch):
    cuda_devices(monkeypatch, 0)
    refused("gpu", "device='gpu' is not a device: pass device=auto (CUDA when there is one) or device=cpu.")
    refused(None, "device=None is not a device")
