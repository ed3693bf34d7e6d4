"""Text <-> token ids, built from GGUF metadata or a tokenizer.json, plus each token's exact bytes.

Encoding goes through the `tokenizers` library (its BPE is exact and fast); decoding never does: every
id maps to the bytes it stands for, so the detokenizer can join bytes and cut only at UTF-8 boundaries.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from local_backend.chat_template import ChatTemplate

_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = _LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}")
_SPLIT_BY_PRE = {
    "llama-bpe": _LLAMA3_SPLIT,
    "llama3": _LLAMA3_SPLIT,
    "smaug-bpe": _LLAMA3_SPLIT,
    "qwen2": _QWEN2_SPLIT,
    "deepseek-r1-qwen": _QWEN2_SPLIT,
}
_CONTROL, _USER_DEFINED = 3, 4
_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-ins for the 256 byte values, inverted."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return {c: b for b, c in chars.items()}


def _bytelevel_bytes(piece: str) -> bytes:
    table = _byte_decoder()
    return bytes(table[c] for c in piece if c in table)


def _spm_bytes(piece: str) -> bytes:
    m = _BYTE_PIECE.match(piece)
    return bytes([int(m.group(1), 16)]) if m else piece.replace("\u2581", " ").encode("utf-8")


class TextTokenizer:
    def __init__(
        self,
        tok: Tokenizer,
        pieces: list[str],
        byte_level: bool,
        special_ids: set[int],
        bos_id: int | None,
        eos_ids: set[int],
        add_bos: bool,
        chat_template: str | None,
        strip_leading_space: bool = False,
    ) -> None:
        self._tok = tok
        self.pieces = pieces
        self.vocab_size = len(pieces)
        self.special_ids = special_ids
        self.bos_id = bos_id
        self.eos_ids = eos_ids
        self.add_bos = add_bos
        self.strip_leading_space = strip_leading_space
        to_bytes = _bytelevel_bytes if byte_level else _spm_bytes
        self.token_bytes = [b"" if i in special_ids else to_bytes(p) for i, p in enumerate(pieces)]
        bos = pieces[bos_id] if bos_id is not None and bos_id < len(pieces) else ""
        eos = pieces[min(eos_ids)] if eos_ids else ""
        self.template = ChatTemplate(chat_template, bos_token=bos, eos_token=eos) if chat_template else None

    def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
        ids = self._tok.encode(text, add_special_tokens=False).ids
        if (self.add_bos if add_bos is None else add_bos) and self.bos_id is not None:
            ids = [self.bos_id, *ids]
        return ids

    def decode(self, ids: list[int]) -> str:
        text = b"".join(self.token_bytes[i] for i in ids).decode("utf-8", errors="replace")
        return text[1:] if self.strip_leading_space and text.startswith(" ") else text

    def token_text(self, token_id: int) -> str:
        """What a single token shows as in logprobs: its bytes, or its name for control tokens."""
        if token_id in self.special_ids:
            return self.pieces[token_id]
        return self.token_bytes[token_id].decode("utf-8", errors="replace")

    def render_chat(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, **kwargs: Any
    ) -> str:
        if self.template is None:
            raise ValueError("this model has no chat template; use the completions endpoint")
        return self.template.render(messages, add_generation_prompt=add_generation_prompt, **kwargs)

    def encode_chat(self, messages: list[dict[str, Any]], **kwargs: Any) -> list[int]:
        # Templates write the BOS token themselves when the model wants one.
        return self.encode(self.render_chat(messages, **kwargs), add_bos=False)


def from_gguf(meta: dict[str, Any]) -> TextTokenizer:
    kind = meta.get("tokenizer.ggml.model", "gpt2")
    pieces: list[str] = list(meta["tokenizer.ggml.tokens"])
    types: list[int] = list(meta.get("tokenizer.ggml.token_type") or [1] * len(pieces))
    vocab = {p: i for i, p in enumerate(pieces)}
    if kind == "gpt2":
        merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
        tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
        pre = meta.get("tokenizer.ggml.pre", "gpt2")
        if pre in _SPLIT_BY_PRE:
            tok.pre_tokenizer = pre_tokenizers.Sequence(
                [
                    pre_tokenizers.Split(Regex(_SPLIT_BY_PRE[pre]), behavior="isolated"),
                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
                ]
            )
        elif pre == "smollm":
            tok.pre_tokenizer = pre_tokenizers.Sequence(
                [
                    pre_tokenizers.Digits(individual_digits=True),
                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
                ]
            )
        else:
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        byte_level, strip = True, False
    elif kind == "llama":
        tok = Tokenizer(
            models.BPE(
                vocab=vocab,
                merges=_spm_merges(pieces, meta.get("tokenizer.ggml.scores")),
                unk_token=pieces[int(meta.get("tokenizer.ggml.unknown_token_id", 0))],
                fuse_unk=True,
                byte_fallback=True,
            )
        )
        steps = [normalizers.Replace(" ", "\u2581")]
        if meta.get("tokenizer.ggml.add_space_prefix", True):
            steps.insert(0, normalizers.Prepend("\u2581"))
        tok.normalizer = normalizers.Sequence(steps)
        byte_level, strip = False, bool(meta.get("tokenizer.ggml.add_space_prefix", True))
    else:
        raise ValueError(f"unsupported GGUF tokenizer model {kind!r}")
    special = {i for i, t in enumerate(types) if t == _CONTROL}
    tok.add_special_tokens([AddedToken(pieces[i], special=True, normalized=False) for i in sorted(special)])
    user = [i for i, t in enumerate(types) if t == _USER_DEFINED]
    tok.add_tokens([AddedToken(pieces[i], normalized=False) for i in user])
    eos = meta.get("tokenizer.ggml.eos_token_id")
    eos_ids = {int(eos)} if eos is not None else set()
    eot = meta.get("tokenizer.ggml.eot_token_id")
    if eot is not None:
        eos_ids.add(int(eot))
    bos = meta.get("tokenizer.ggml.bos_token_id")
    default_bos = kind == "llama"
    return TextTokenizer(
        tok,
        pieces,
        byte_level,
        special,
        int(bos) if bos is not None else None,
        eos_ids,
        bool(meta.get("tokenizer.ggml.add_bos_token", default_bos)),
        meta.get("tokenizer.chat_template"),
        strip_leading_space=strip,
    )


def _spm_merges(pieces: list[str], scores: list[float] | None) -> list[tuple[str, str]]:
    """SentencePiece BPE keeps scores, not merges: every split of a piece into two known pieces is a merge,
    ranked by the merged piece's score (the order SentencePiece would apply them)."""
    vocab = {p: i for i, p in enumerate(pieces)}
    rank = (lambda p: -scores[vocab[p]]) if scores else (lambda p: vocab[p])
    found = []
    for piece in pieces:
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                found.append((rank(piece), vocab[left], vocab[right], left, right))
    found.sort()
    return [(left, right) for *_, left, right in found]


def from_tokenizer_json(path: str, tok_cfg: dict[str, Any], eos_token_id: Any) -> TextTokenizer:
    tok = Tokenizer.from_file(path)
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    size = tok.get_vocab_size(with_added_tokens=True)
    id_to_piece = {i: p for p, i in tok.get_vocab(with_added_tokens=True).items()}
    pieces = [id_to_piece.get(i, "") for i in range(size)]
    special = {t["id"] for t in data.get("added_tokens", []) if t.get("special")}
    byte_level = "ByteLevel" in json.dumps(data.get("decoder"))

    def token_id(entry: Any) -> int | None:
        text = entry.get("content") if isinstance(entry, dict) else entry
        return tok.token_to_id(text) if text else None

    eos_ids = set(eos_token_id if isinstance(eos_token_id, list) else [eos_token_id] if eos_token_id else [])
    eos = token_id(tok_cfg.get("eos_token"))
    if eos is not None:
        eos_ids.add(eos)
    template = tok_cfg.get("chat_template")
    if isinstance(template, list):  # several named templates: take the default one
        template = next(
            (t["template"] for t in template if t.get("name") == "default"), template[0]["template"]
        )
    return TextTokenizer(
        tok,
        pieces,
        byte_level,
        special,
        token_id(tok_cfg.get("bos_token")),
        eos_ids,
        bool(tok_cfg.get("add_bos_token", False)),
        template,
        strip_leading_space=not byte_level,
    )


def load_tokenizer(source: dict[str, Any]) -> TextTokenizer:
    if "gguf" in source:
        return from_gguf(source["gguf"])
    return from_tokenizer_json(
        source["tokenizer_json"], source["tokenizer_config"], source.get("eos_token_id")
    )
