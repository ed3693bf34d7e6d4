from local_backend.detokenizer import IncrementalDetokenizer

EURO = "€".encode()  # three bytes
TOKENS = [b"Hello", b" wor", b"ld", EURO[:1], EURO[1:2], EURO[2:], b"!", b" STOP", b"here", b"\xff"]


def feed(detok: IncrementalDetokenizer, ids: list[int]) -> list[str]:
    return [detok.add(i) for i in ids]


def test_split_character_is_held_until_complete() -> None:
    d = IncrementalDetokenizer(TOKENS)
    out = feed(d, [0, 3, 4, 5, 6])
    assert out == ["Hello", "", "", "€", "!"]
    assert all("\ufffd" not in piece for piece in out)


def test_dangling_bytes_become_replacement_only_at_the_end() -> None:
    d = IncrementalDetokenizer(TOKENS)
    assert feed(d, [0, 3]) == ["Hello", ""]
    assert d.flush() == "\ufffd"


def test_stop_string_across_tokens_is_cut_and_never_streamed() -> None:
    d = IncrementalDetokenizer(TOKENS, stop=["world!"])
    out = feed(d, [0, 1, 2, 6, 7])
    assert "".join(out) == "Hello " and d.stopped
    assert d.text == "Hello "


def test_text_that_only_looks_like_a_stop_prefix_is_released() -> None:
    d = IncrementalDetokenizer(TOKENS, stop=["STOPPED"])
    out = feed(d, [0, 7, 8])
    assert not d.stopped
    assert "".join(out) + d.flush() == "Hello STOPhere"


def test_leading_space_strip_for_sentencepiece() -> None:
    d = IncrementalDetokenizer([b" Hi", b" there"], strip_leading_space=True)
    assert feed(d, [0, 1]) == ["Hi", " there"]
