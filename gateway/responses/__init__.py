"""The OpenAI Responses API (`/v1/responses`): the pipeline's third door, its translation to chat
completions for upstreams that only speak chat, and the responses it stores per key."""
