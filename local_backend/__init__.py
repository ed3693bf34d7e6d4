"""Switchyard's own inference engine: a small continuous-batching PyTorch server for the Llama family.

Layout, the nano-vllm way: `sequence`, `block_manager` and `scheduler` are pure Python; `model`,
`attention`, `runner`, `cuda_graphs` and `sampler` are the only modules that touch torch; `engine` ties
them together and `async_engine` runs it on its own thread for asyncio callers.
"""
