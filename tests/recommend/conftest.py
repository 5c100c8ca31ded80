"""Fixtures of the recommend tests: tiny models and inputs, quiet third-party logs."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
from recommend_fakes import Blocks
from torch import nn

for noisy in ("transformers", "torchao"):
    logging.getLogger(noisy).setLevel(logging.ERROR)


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models gain nothing from a second thread, and on a busy machine a parallel kernel
    # waits for a descheduled peer: one thread keeps these tests fast and steady.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _quiet_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


@pytest.fixture
def blocks() -> Blocks:
    torch.manual_seed(0)
    return Blocks().eval()


@pytest.fixture
def tokens() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, 50, (4, 12), generator=generator)


@pytest.fixture
def tiny_bert() -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=60,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=3,
    )
    return BertForSequenceClassification(config).eval()


@pytest.fixture
def tiny_gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=60,
        n_embd=32,
        n_layer=3,
        n_head=4,
        n_positions=32,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(config).eval()
