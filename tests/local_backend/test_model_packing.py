"""oneDNN-packed weights, on a tiny random model whose lm_head is its own matrix (Qwen2-like)."""

from __future__ import annotations

import pytest
import torch

from local_backend.model import LlamaModel, can_pack
from tests.local_backend.tiny_model import CFG, tiny_tensors


@pytest.mark.skipif(not can_pack(torch.device("cpu"), torch.bfloat16), reason="no native bf16 on this CPU")
def test_bf16_packed_everywhere_drops_plain_matrices_and_answers_alike() -> None:
    cpu = torch.device("cpu")
    packed = LlamaModel(CFG, tiny_tensors(), torch.bfloat16, cpu, block_size=16, packed=True)
    plain = LlamaModel(CFG, tiny_tensors(), torch.bfloat16, cpu, block_size=16, packed=False)
    assert packed.pack_from_rows == 1
    assert packed.lm_head is None  # its own matrix, read only through the packed copy
    assert all(set(layer) == {"bqkv"} for layer in packed.layers)  # the bias stays: it is added as is
    ids = torch.tensor([3, 50, 95])
    assert torch.equal(packed.embed_tokens(ids), plain.embed_tokens(ids))
    for rows in (1, 3):
        hidden = torch.randn(rows, CFG.hidden_size).bfloat16()
        got, want = packed.logits(hidden), plain.logits(hidden)
        assert got.dtype is torch.float32 and got.shape == (rows, CFG.vocab_size)
        torch.testing.assert_close(got, want, atol=2e-2, rtol=2e-2)


def test_fp32_keeps_the_plain_gemv_for_one_row() -> None:
    model = LlamaModel(CFG, tiny_tensors(), torch.float32, torch.device("cpu"), block_size=16, packed=True)
    assert model.pack_from_rows == 2
    assert model.lm_head is not None and all("wqkv" in layer for layer in model.layers)
