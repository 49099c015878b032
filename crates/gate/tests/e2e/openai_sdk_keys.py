"""The OpenAI Python SDK against a gateway that uses client keys.

argv: base_url, a valid key, a key with rpm=1, a key with a $0 budget, a key allowed only model "ok".
Prints one JSON object: what each call got (status, type, code). The gateway's request log
counts how often the SDK asked.
"""
import json
import sys

import openai

base, good, rpm1, broke, only_ok = sys.argv[1:6]
out = {}


def client(key, retries=0):
    return openai.OpenAI(base_url=base, api_key=key, max_retries=retries)


def call(name, key, model="ok", retries=0):
    try:
        r = client(key, retries).chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        out[name] = {"status": 200, "text": r.choices[0].message.content}
    except openai.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        err = body.get("error", body) if isinstance(body, dict) else {}
        out[name] = {
            "status": e.status_code,
            "class": type(e).__name__,
            "type": err.get("type"),
            "code": err.get("code"),
            "retry_after": e.response.headers.get("retry-after"),
        }


call("valid", good)
call("invalid", "cg-not-a-key")
call("wrong_model", only_ok, model="other")
call("allowed_model", only_ok)
call("rpm_first", rpm1)
call("rpm_second", rpm1)
# The SDK retries 429s by default; a spent budget says x-should-retry: false, so it must not.
call("budget", broke, retries=2)
print(json.dumps(out))
