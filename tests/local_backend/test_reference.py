"""Our forward pass against transformers' LlamaForCausalLM on the same GGUF, fp32, through every
attention path: fresh prefill, a chunk that gathers earlier keys from the paged cache, and padded
batched decode. transformers dequantises the file with its own loader, offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from local_backend.bench import hf_llama_config
from local_backend.config import EngineConfig
from local_backend.cpu_kernels import build_cpu_kernels
from local_backend.cuda_graphs import StaticDecode, capture_buckets
from local_backend.engine import LLMEngine
from local_backend.scheduler import ScheduledBatch
from local_backend.sequence import SamplingParams, SeqStatus, Sequence
from local_backend.weights import Checkpoint, resolve_model

TOL = 1e-3


@pytest.fixture(scope="module")
def hf_model(monkeypatch_module: pytest.MonkeyPatch, checkpoint: Checkpoint) -> torch.nn.Module:
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    monkeypatch_module.setenv("HF_HUB_OFFLINE", "1")
    mc = checkpoint.config  # only the shape numbers; the weights come from transformers' own loader
    model = transformers.LlamaForCausalLM(hf_llama_config(mc)).eval()
    path = str(resolve_model("smollm2"))
    tensors = load_gguf_checkpoint(path, return_tensors=True, model_to_load=model)["tensors"]
    model.load_state_dict(tensors, strict=False)
    model.tie_weights()
    return model


@pytest.fixture(scope="module")
def monkeypatch_module() -> pytest.MonkeyPatch:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def fresh(checkpoint: Checkpoint) -> LLMEngine:
    """Its own KV cache, written by hand here without disturbing the shared engine's prefix cache."""
    return LLMEngine(checkpoint, EngineConfig(dtype="float32", kv_cache_bytes=32 * 1024**2, num_threads=1))


def _admit(engine: LLMEngine, name: str, ids: list[int]) -> Sequence:
    seq = Sequence(name, ids, SamplingParams())
    engine.block_manager.admit(seq)
    seq.status = SeqStatus.RUNNING
    return seq


@torch.inference_mode()
def _forward(engine: LLMEngine, seqs: list[Sequence], num_new: list[int], num_decode: int) -> torch.Tensor:
    runner = engine.runner
    ids, positions, meta, _ = runner.prepare(ScheduledBatch(seqs, num_new, num_decode))
    logits = runner.model.logits(runner.model(ids, positions, meta, runner.kv_caches))
    for seq, n in zip(seqs, num_new, strict=True):
        seq.num_computed_tokens += n
    return logits


def test_logits_match_transformers_through_every_attention_path(
    fresh: LLMEngine, hf_model: torch.nn.Module
) -> None:
    tok = fresh.tokenizer
    a = tok.encode_chat([{"role": "user", "content": "Explain why the sky is blue in two sentences."}])
    b = tok.encode_chat([{"role": "user", "content": "List the planets."}])
    with torch.inference_mode():
        ref_a = hf_model(torch.tensor([a])).logits[0]
        ref_b = hf_model(torch.tensor([b])).logits[0]
    sa = _admit(fresh, "a", a[:-1])
    sb = _admit(fresh, "b", b[:-1])
    first = _forward(fresh, [sa, sb], [20, len(b) - 1], 0)  # a: fresh chunk, b: whole prompt
    assert (first[:20] - ref_a[:20]).abs().max() < TOL
    assert (first[20:] - ref_b[: len(b) - 1]).abs().max() < TOL
    second = _forward(fresh, [sa], [len(a) - 1 - 20], 0)  # a: chunk that reads cached keys
    assert (second - ref_a[20 : len(a) - 1]).abs().max() < TOL
    for seq, last in ((sa, a[-1]), (sb, b[-1])):
        seq.append(last)
        fresh.block_manager.ensure(seq, len(seq))
    decode = _forward(fresh, [sa, sb], [1, 1], 2)  # two decodes of different lengths, padded
    assert (decode[0] - ref_a[-1]).abs().max() < TOL
    assert (decode[1] - ref_b[-1]).abs().max() < TOL
    # Batch 1 takes our C kernels (where a compiler built them), batches torch's products: both must
    # agree with transformers.
    assert fresh.runner.model.kernels is not None or build_cpu_kernels(1) is None
    nxt = int(decode[0].argmax())
    with torch.inference_mode():
        ref_next = hf_model(torch.tensor([[*a, nxt]])).logits[0, -1]
    sa.append(nxt)
    fresh.block_manager.ensure(sa, len(sa))
    single = _forward(fresh, [sa], [1], 1)
    assert (single[0] - ref_next).abs().max() < TOL
    for seq in (sa, sb):
        fresh.block_manager.release(seq)


@torch.inference_mode()
def test_static_decode_for_cuda_graphs_matches_eager_on_cpu(
    fresh: LLMEngine, chat_prompts: list[list[int]]
) -> None:
    """The CUDA-graph path's fixed-shape forward (padding to a bucket, spare block, full-width block
    tables) run eagerly on CPU must equal the dynamic decode."""
    runner = fresh.runner
    seqs = [_admit(fresh, f"s{i}", p) for i, p in enumerate(chat_prompts[:3])]
    _forward(fresh, seqs, [len(s) for s in seqs], 0)
    for s in seqs:
        s.append(42)
        fresh.block_manager.ensure(s, len(s))
    batch = ScheduledBatch(seqs, [1, 1, 1], 3)
    ids, positions, meta, _ = runner.prepare(batch)
    static = StaticDecode(
        runner.model,
        runner.kv_caches,
        capture_buckets(8),
        runner.max_blocks_per_seq,
        runner.block_size,
        runner.num_blocks,
        use_flash=False,
        capture=False,
    )
    assert static.fits(meta)
    padded = static.run(ids, positions, meta)
    assert padded.shape == (3, fresh.model_config.hidden_size)
    ids, positions, meta, _ = runner.prepare(batch)
    eager = runner.model(ids, positions, meta, runner.kv_caches)
    assert (padded - eager).abs().max() < 1e-4
    for s in seqs:
        fresh.block_manager.release(s)


def test_capture_buckets_and_cuda_imports() -> None:
    assert capture_buckets(64) == [1, 2, 4, 8, 16, 32, 48, 64]
    assert capture_buckets(4) == [1, 2, 4]
    import local_backend.attention as attention

    assert attention.flash_available(torch.device("cpu")) is False


@pytest.mark.parametrize("arch", ["qwen2", "llama3"])
def test_safetensors_folder_matches_transformers(arch: str, engine: LLMEngine, tmp_path: Path) -> None:
    """A tiny random model saved the Hugging Face way: Qwen2's q/k/v biases and untied head, Llama 3's
    rope scaling, the safetensors loader and tokenizer.json, against transformers' own forward."""
    transformers = pytest.importorskip("transformers")
    common = {
        "vocab_size": engine.tokenizer.vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "tie_word_embeddings": False,
        "max_position_embeddings": 2048,
    }
    torch.manual_seed(0)
    if arch == "qwen2":
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common, rope_theta=1e6))
    else:
        scaling = {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
            "rope_theta": 5e5,
        }
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**common, rope_scaling=scaling))
    model.eval().save_pretrained(tmp_path, safe_serialization=True)
    engine.tokenizer._tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(
        '{"eos_token": "<|im_end|>", "bos_token": "<|im_start|>", "chat_template": "{% for m in messages %}'
        '<|im_start|>{{ m.role }}\\n{{ m.content }}<|im_end|>\\n{% endfor %}<|im_start|>assistant\\n"}'
    )
    generation = tmp_path / "generation_config.json"
    sampling = {"do_sample": True, "temperature": 0.6, "top_p": 0.9}
    generation.write_text(json.dumps({**json.loads(generation.read_text()), **sampling}))
    local = LLMEngine(str(tmp_path), EngineConfig(dtype="float32", kv_cache_bytes=4 * 1024**2, num_threads=1))
    assert (local.generation_defaults.temperature, local.generation_defaults.top_p) == (0.6, 0.9)
    ids = local.tokenizer.encode_chat([{"role": "user", "content": "Tell me about positional encodings."}])
    assert ids[:3] == [1, 4093, 198]  # this template: <|im_start|>user\n, no default system turn
    assert local.tokenizer.encode("naïve café 123") == engine.tokenizer.encode("naïve café 123")
    with torch.inference_mode():
        ref = model(torch.tensor([ids])).logits[0]
    seq = _admit(local, "t", ids)
    ours = _forward(local, [seq], [len(ids)], 0)
    assert (ours - ref).abs().max() < 1e-4
