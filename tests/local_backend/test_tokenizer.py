from local_backend.detokenizer import IncrementalDetokenizer
from local_backend.engine import LLMEngine

# Produced by transformers' own GGUF tokenizer conversion for the bundled file.
HF_IDS = [19556, 905, 28, 5549, 137, 94, 25972, 4635, 216, 33, 34, 35, 36, 37, 38, 216, 8866, 5600]
HF_CHAT_TAIL = [1, 4093, 198, 1780, 314, 216, 34, 27, 34, 47, 2, 198, 1, 520, 9531, 198]


def test_encoding_matches_transformers(engine: LLMEngine) -> None:
    tok = engine.tokenizer
    assert tok.encode("Hello world, ünïcode 123456 \n\n  spaces") == HF_IDS
    ids = tok.encode_chat([{"role": "user", "content": "What is 2+2?"}])
    assert ids[-len(HF_CHAT_TAIL) :] == HF_CHAT_TAIL and len(ids) == 37


def test_chat_template_renders_roles_and_generation_prompt(engine: LLMEngine) -> None:
    text = engine.tokenizer.render_chat(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        ]
    )
    assert (
        text
        == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_round_trip_and_streaming_never_splits_a_character(engine: LLMEngine) -> None:
    tok = engine.tokenizer
    text = "naïve café — 日本語のテキスト 🚀✨ done"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    partial = [i for i in ids if _incomplete(tok.token_bytes[i])]
    assert partial, "the sample should contain tokens that are not whole characters"
    detok = IncrementalDetokenizer(tok.token_bytes)
    pieces = [detok.add(i) for i in ids]
    assert "".join(pieces) + detok.flush() == text
    assert all("\ufffd" not in p for p in pieces)


def _incomplete(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False
