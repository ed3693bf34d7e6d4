"""What the engine is told (EngineConfig) and what it learns from the weights (ModelConfig)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(slots=True)
class ModelConfig:
    architecture: str  # "llama" or "qwen2"; both are the same graph, qwen2 adds q/k/v biases
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    max_position: int
    tie_embeddings: bool
    attention_bias: bool
    rope_scaling: dict[str, Any] | None = None

    def kv_bytes_per_token(self, itemsize: int) -> int:
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * itemsize

    def weight_bytes(self, itemsize: int) -> int:
        """Bytes one decode step reads from the weights: every matrix once, the embedding only as lm_head."""
        h, i, hd = self.hidden_size, self.intermediate_size, self.head_dim
        per_layer = h * (self.num_heads + 2 * self.num_kv_heads) * hd + self.num_heads * hd * h + 3 * h * i
        return (self.num_layers * per_layer + self.vocab_size * h) * itemsize


@dataclass(slots=True)
class EngineConfig:
    device: str = "auto"  # "auto" picks cuda when available
    # The weights' dtype (and the KV cache's). auto: bfloat16 on cuda; on cpu bfloat16 where our C
    # kernels run (they read bf16 weights with fp32 activations: half fp32's memory, and faster), else
    # float32 (torch's bf16 matmul on a CPU without native bf16 is slow). float32 is exact: the tests
    # that compare with transformers use it.
    dtype: str = "auto"
    # 0: room for max_model_len tokens, so the longest request always fits (for SmolLM2 in bf16, 4096
    # tokens: 94 MB). Pages are committed as blocks are first written, so an idle budget costs nothing;
    # a busy one is what bounds memory (kv_cache_mb in the deployment's options).
    kv_cache_bytes: int = 0
    block_size: int = 16
    max_num_seqs: int = 64
    max_num_batched_tokens: int = 1024  # per step; longer prompts are prefilled in chunks
    max_model_len: int = 4096
    enable_prefix_caching: bool = True
    enforce_eager: bool = False  # cuda only: skip CUDA-graph capture
    cuda_graph_max_batch: int = 64
    # cpu threads: our kernels' pool (torch then keeps one), else torch's; 0: all this process may use
    num_threads: int = 0
    # cpu: compile our C kernels at start (decode steps, and bf16 products, on num_threads threads). Needs
    # a C compiler; without one, or off, torch's ops.
    cpu_kernels: bool = True
    seed: int = 0
    served_model_name: str = ""

    @classmethod
    def from_options(cls, options: dict[str, Any] | None) -> EngineConfig:
        """Builds from a loose dict (deployment options, CLI flags); unknown keys are an error, not noise."""
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        if "kv_cache_mb" in options:
            options["kv_cache_bytes"] = int(float(options.pop("kv_cache_mb")) * 1024**2)
        if "max_batch" in options:
            options["max_num_seqs"] = options.pop("max_batch")
        unknown = set(options) - known
        if unknown:
            raise ValueError(f"unknown local engine options: {sorted(unknown)}")
        cfg = cls(**{k: v for k, v in options.items() if v is not None})
        if cfg.block_size <= 0 or cfg.max_num_seqs <= 0 or cfg.max_num_batched_tokens <= 0:
            raise ValueError("block_size, max_num_seqs and max_num_batched_tokens must be positive")
        return cfg
