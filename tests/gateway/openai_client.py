"""The official OpenAI Python client against a running Talaria gateway.

Run by tests/integration/gateway.rs, which starts the gateway with a
scripted model that answers, in order: "Plain answer.", a streamed
"Streamed answer.", a call of the text skill's `count` tool, then
"The text has 3 words.", then "Noted: blue." and "Your colour is blue."
and a streamed "Streamed response." (for the Responses API).

usage: openai_client.py BASE_URL API_KEY
"""

import sys

import openai
from openai import OpenAI

base_url, key = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30)


def check(what, actual, expected):
    if actual != expected:
        sys.exit(f"{what}: expected {expected!r}, got {actual!r}")
    print(f"ok: {what}")


check("models.list", [m.id for m in client.models.list()], ["talaria"])

plain = client.chat.completions.create(
    model="talaria", messages=[{"role": "user", "content": "Say something plain."}]
)
check("plain completion", plain.choices[0].message.content, "Plain answer.")
check("plain finish_reason", plain.choices[0].finish_reason, "stop")

stream = client.chat.completions.create(
    model="talaria",
    messages=[{"role": "user", "content": "Stream something."}],
    stream=True,
    stream_options={"include_usage": True},
)
text = ""
usage = None
for chunk in stream:
    # Every event is an OpenAI chunk: one with a choice, or the usage one.
    if not chunk.choices and chunk.usage is None:
        sys.exit(f"a chunk that is neither: {chunk!r}")
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if chunk.usage is not None:
        usage = chunk.usage
check("streamed completion", text, "Streamed answer.")
check("streamed usage", usage.total_tokens if usage else None, 12)

raw = client.chat.completions.with_raw_response.create(
    model="talaria",
    messages=[{"role": "user", "content": "How many words in 'one two three'?"}],
)
check("a turn that calls a skill tool", raw.parse().choices[0].message.content, "The text has 3 words.")
check("the session header", bool(raw.headers.get("x-talaria-session-id")), True)

first = client.responses.create(
    model="talaria", instructions="Be terse.", input="My favourite colour is blue."
)
check("responses.create", first.output_text, "Noted: blue.")
second = client.responses.create(
    model="talaria", input="What is my favourite colour?", previous_response_id=first.id
)
check("responses.create with previous_response_id", second.output_text, "Your colour is blue.")
check("responses.retrieve", client.responses.retrieve(first.id).output_text, "Noted: blue.")

kinds = []
streamed = ""
for event in client.responses.create(model="talaria", input="Stream a response.", stream=True):
    kinds.append(event.type)
    if event.type == "response.output_text.delta":
        streamed += event.delta
    if event.type == "response.completed":
        completed_text = event.response.output_text
check("streamed response text", streamed, "Streamed response.")
check("streamed response events", (kinds[0], kinds[-1]), ("response.created", "response.completed"))
check("streamed response completed", completed_text, "Streamed response.")

wrong = OpenAI(base_url=base_url, api_key="wrong-key-wrong-key-wrong", max_retries=0)
try:
    wrong.models.list()
    sys.exit("a wrong key was accepted")
except openai.AuthenticationError as error:
    check("a wrong key raises AuthenticationError", error.status_code, 401)
