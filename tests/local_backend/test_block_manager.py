from local_backend.block_manager import BlockManager
from local_backend.sequence import SamplingParams, Sequence


def seq(name: str, tokens: list[int]) -> Sequence:
    return Sequence(name, tokens, SamplingParams())


def computed(bm: BlockManager, s: Sequence) -> None:
    s.num_computed_tokens = len(s)
    bm.commit(s)


def test_admit_allocates_blocks_for_every_token() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    s = seq("a", list(range(10)))
    assert bm.can_admit(s)
    bm.admit(s)
    assert len(s.block_table) == 3 and bm.num_free == 5
    assert s.num_computed_tokens == 0
    bm.release(s)
    assert bm.num_free == 8 and s.block_table == []


def test_ensure_grows_by_whole_blocks_all_or_nothing() -> None:
    bm = BlockManager(num_blocks=3, block_size=4)
    s = seq("a", list(range(4)))
    bm.admit(s)
    assert bm.ensure(s, 5) and len(s.block_table) == 2
    assert bm.ensure(s, 8) and len(s.block_table) == 2
    assert not bm.ensure(s, 13)  # needs 2 more, 1 free
    assert len(s.block_table) == 2 and bm.num_free == 1


def test_prefix_hits_share_blocks_and_count_refs() -> None:
    bm = BlockManager(num_blocks=16, block_size=4)
    a = seq("a", list(range(10)))
    bm.admit(a)
    computed(bm, a)
    b = seq("b", [*range(8), 99, 98, 97])
    bm.admit(b)
    assert b.block_table[:2] == a.block_table[:2]
    assert b.num_computed_tokens == 8 and b.num_cached_tokens == 8
    assert bm.blocks[a.block_table[0]].ref_count == 2
    bm.release(a)
    assert bm.blocks[b.block_table[0]].ref_count == 1


def test_uncomputed_blocks_are_not_shared() -> None:
    bm = BlockManager(num_blocks=16, block_size=4)
    a = seq("a", list(range(12)))
    bm.admit(a)  # nothing computed yet: its blocks must not be offered to others
    b = seq("b", list(range(12)))
    bm.admit(b)
    assert b.num_computed_tokens == 0 and not set(a.block_table) & set(b.block_table)


def test_at_least_one_token_is_left_to_compute() -> None:
    bm = BlockManager(num_blocks=16, block_size=4)
    a = seq("a", list(range(8)))
    bm.admit(a)
    computed(bm, a)
    again = seq("b", list(range(8)))
    bm.admit(again)
    assert again.num_computed_tokens == 4  # the second block is recomputed to get the last logits


def test_freed_blocks_stay_cached_until_reused() -> None:
    bm = BlockManager(num_blocks=4, block_size=4)
    a = seq("a", list(range(9)))
    bm.admit(a)
    computed(bm, a)
    bm.release(a)
    b = seq("b", list(range(9)))
    assert bm.can_admit(b)
    bm.admit(b)
    assert b.num_computed_tokens == 8
    bm.release(b)
    # Fill the cache with something else: the old prefix is evicted, oldest-freed first.
    c = seq("c", list(range(100, 116)))
    bm.admit(c)
    computed(bm, c)
    bm.release(c)
    d = seq("d", list(range(9)))
    bm.admit(d)
    assert d.num_computed_tokens == 0


def test_disabled_prefix_cache_never_hits() -> None:
    bm = BlockManager(num_blocks=8, block_size=4, enable_prefix_caching=False)
    a = seq("a", list(range(9)))
    bm.admit(a)
    computed(bm, a)
    b = seq("b", list(range(9)))
    bm.admit(b)
    assert b.num_computed_tokens == 0
