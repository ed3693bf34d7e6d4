import numpy as np
import pytest
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize, quantize

from local_backend import gguf_file
from local_backend.config import EngineConfig
from local_backend.weights import Checkpoint, resolve_model


@pytest.mark.parametrize(
    "qtype", [GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q4_1, GGMLQuantizationType.Q8_0]
)
def test_torch_dequantisation_is_bit_exact_with_gguf_py(qtype: GGMLQuantizationType) -> None:
    w = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    packed = quantize(w, qtype)
    ref = dequantize(packed, qtype)
    block = torch.from_numpy(packed.copy()).view(-1, GGML_QUANT_SIZES[qtype][1])
    assert torch.equal(gguf_file._FAST[qtype](block).reshape(8, 64), torch.from_numpy(ref))


def test_bundled_checkpoint_shape(checkpoint: Checkpoint) -> None:
    c = checkpoint.config
    assert (c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.vocab_size) == (30, 576, 9, 3, 49152)
    assert c.tie_embeddings and not c.attention_bias
    assert resolve_model("smollm2") == resolve_model("SmolLM2-135M-Instruct")


def test_engine_options_are_validated() -> None:
    cfg = EngineConfig.from_options({"kv_cache_mb": 64, "max_batch": 8, "device": "cpu"})
    assert cfg.kv_cache_bytes == 64 * 1024**2 and cfg.max_num_seqs == 8
    with pytest.raises(ValueError, match="unknown"):
        EngineConfig.from_options({"kv_cache": 1})
    with pytest.raises(FileNotFoundError):
        resolve_model("/nonexistent/model.gguf")


def test_tensors_are_read_when_asked_whole_or_by_rows(checkpoint: Checkpoint) -> None:
    tensors = checkpoint.tensors
    embed = "model.embed_tokens.weight"
    assert tensors.shape(embed) == (49152, 576) and "lm_head.weight" not in tensors
    whole = tensors[embed]
    assert whole.dtype is torch.float32 and whole.shape == (49152, 576)
    assert torch.equal(tensors.rows(embed, 4096, 4100), whole[4096:4100])
    q = "model.layers.0.self_attn.q_proj.weight"  # its rows are un-permuted for rope on the way in
    assert torch.equal(tensors.rows(q, 64, 128), tensors[q][64:128])
    norm = tensors["model.norm.weight"]
    assert norm.shape == (576,) and norm.dtype is torch.float32
