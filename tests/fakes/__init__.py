"""Fake upstream servers on 127.0.0.1 that speak each provider's real wire format.

Shared fault convention (every fake honours it; the fault is chosen by the upstream model id, which
for Gemini is the model in the URL path):
  fail-400        400 with the provider's own error body
  fail-401        401
  fail-429        429 with Retry-After: 0
  fail-500        500
  flaky-N-<any>   500 for the first N calls of that model id on this server, then normal answers
  hang            never answers (sleeps 60 s): for client timeouts
  die-midstream   streams two content chunks, then drops the connection without finishing
  stall-midstream streams two content chunks (streamed chat only), then sends nothing until the
                  client gives up: for read timeouts after the stream started
  echo-key-*      error messages that quote the request's credentials (`echo_faults`)
  resp-*          (OpenAI's /v1/responses only) a 200 that is not a Response or a broken event
                  stream (`responses_faults`)
  anything else   a normal, deterministic answer
Connection refused is tested by pointing a deployment at a closed port (`closed_port()`).

Normal answers are deterministic: content "Hello from <provider>!" split over 3 chunks when streamed;
usage prompt_tokens = number of whitespace-separated words in all message text (at least 1),
completion_tokens = 3. With tools offered (and tool_choice not "none") and no tool result yet in the
conversation, the answer is a call of the first tool with arguments {"city": "Paris"}; once a tool
result is present, the content is "The tool said: <tool result text>". With a JSON response format the
content is '{"ok": true}'. Each fake records the requests it received (`server.requests`) so tests can
check what was forwarded.
"""
