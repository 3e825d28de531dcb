"""models/devices.full_float32: IEEE float32 for the detector's nets on CUDA, PyTorch's own settings put
back afterwards, also when calls overlap or fail. The settings are plain Python-side flags, so this
runs without a GPU."""

from __future__ import annotations

import pytest
import torch

from mimamori.models.devices import full_float32

CUDA = torch.device("cuda")


def precisions() -> tuple[str, str, str]:
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    return cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision, matmul.fp32_precision


def flags() -> tuple[bool, bool]:
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


@pytest.fixture(autouse=True)
def pytorch_defaults_back():
    """Each test leaves PyTorch's flags as it found them (the legacy setters also undo a mix of the two)."""
    before = flags()
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def no_tf32() -> bool:
    return not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32


def test_inside_there_is_no_tf32_and_afterwards_as_it_was():
    assert flags() == (True, False)  # PyTorch's defaults: TF32 for cuDNN, not for matrix products
    with full_float32(CUDA):
        assert no_tf32()
    assert flags() == (True, False)


def test_overlapping_calls_keep_it_until_the_last_one_leaves():
    first, second = full_float32(CUDA), full_float32(CUDA)
    before = flags()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first call ends while the second's nets still run
    assert no_tf32()
    second.__exit__(None, None, None)
    assert flags() == before


def test_a_failure_inside_puts_it_back_and_a_users_own_flags_stay():
    torch.backends.cuda.matmul.allow_tf32 = True  # the user's choice
    with pytest.raises(ValueError, match="inside"), full_float32(CUDA):
        assert no_tf32()
        raise ValueError("inside")
    assert flags() == (True, True)


def test_a_user_who_set_the_per_operator_precision_keeps_it():
    """PyTorch's newer settings, once used, make the legacy flags raise: then those settings are used."""
    torch.backends.cudnn.conv.fp32_precision = "ieee"  # the user's choice, before any call
    before = precisions()
    with pytest.raises(RuntimeError):
        torch.backends.cudnn.allow_tf32  # noqa: B018 - the read itself raises
    with full_float32(CUDA):
        assert precisions() == ("ieee", "ieee", "ieee")
    assert precisions() == before  # (the fixture then sets the legacy flags back, which also clears the mix)


def test_on_a_cpu_nothing_changes():
    before = precisions()
    with full_float32(torch.device("cpu")):
        assert precisions() == before and flags() == (True, False)
