"""Drive codex-gate with the official OpenAI Python SDK: responses and chat, streaming and not.

Usage: python openai_sdk.py BASE_URL   (BASE_URL like http://127.0.0.1:PORT/v1)
Prints one JSON line of results; exits non-zero on the first failed expectation.
"""
import json
import sys

import openai
from openai import OpenAI

base = sys.argv[1]
client = OpenAI(base_url=base, api_key="sdk-client-key", max_retries=0, timeout=30)
out = {}

# "coder" is a Responses upstream; "coder-x" is a chat upstream behind the Responses API.
for model in ("coder", "coder-x"):
    r = client.responses.create(model=model, input="hello")
    assert r.output_text == "d0 d1 d2 d3 d4 ", (model, r.output_text)
    assert r.usage.input_tokens == 120 and r.usage.output_tokens == 30, (model, r.usage)
out["responses"] = r.output_text

for model in ("coder", "coder-x"):
  text, types = "", []
  with client.responses.stream(model=model, input="hello") as s:
    for ev in s:
        types.append(ev.type)
        if ev.type == "response.output_text.delta":
            text += ev.delta
    final = s.get_final_response()
  assert text == "d0 d1 d2 d3 d4 ", (model, text)
  assert types[0] == "response.created" and types[-1] == "response.completed", (model, types)
  assert final.usage.total_tokens == 150, (model, final.usage)
out["responses_stream"] = text

# "chatty" is a chat upstream; "chatty-x" is a Responses upstream behind Chat Completions.
for model in ("chatty", "chatty-x"):
    c = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert c.choices[0].message.content == "d0 d1 d2 d3 d4 ", (model, c)
    assert c.usage.prompt_tokens == 120
out["chat"] = c.choices[0].message.content

for model in ("chatty", "chatty-x"):
    chunks = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True})
    text, usage = "", None
    for ch in chunks:
        if ch.choices and ch.choices[0].delta.content:
            text += ch.choices[0].delta.content
        if ch.usage:
            usage = ch.usage
    assert text == "d0 d1 d2 d3 d4 ", (model, text)
    assert usage is not None and usage.completion_tokens == 30, (model, usage)
out["chat_stream"] = text

# Tools across the bridge: a chat client gets tool_calls from a Responses upstream.
c = client.chat.completions.create(model="tools-x", messages=[{"role": "user", "content": "run"}],
    tools=[{"type": "function", "function": {"name": "exec_command", "parameters": {"type": "object"}}}])
assert c.choices[0].finish_reason == "tool_calls", c
assert c.choices[0].message.tool_calls[0].function.name == "exec_command", c
out["chat_tools_x"] = c.choices[0].message.tool_calls[0].function.name

try:
    client.chat.completions.create(model="no-such-model", messages=[])
    raise AssertionError("expected NotFoundError")
except openai.NotFoundError as e:
    assert e.body["code"] == "model_not_found", e.body
    out["not_found"] = e.body["code"]

try:
    client.responses.create(model="limited", input="x")
    raise AssertionError("expected RateLimitError")
except openai.RateLimitError as e:
    assert e.body["type"] == "usage_limit_reached", e.body
    out["usage_limit"] = e.body["type"]

print(json.dumps(out))
