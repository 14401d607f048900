"""Drives Policy Mesh's Messages API with the official Anthropic SDK.

Run by tests/gateway/openai_sdk.rs (the SDK tests), one scenario per run:

    python client.py SCENARIO BASE_URL MODEL PROMPT

BASE_URL is the gateway's `http://host:port` (the SDK adds `/v1/messages`).
The script makes the calls of SCENARIO and prints one JSON line describing
what the SDK returned or raised; the Rust test asserts on it. It exits 0
when the scenario ran to its end (an expected exception included), 2 with a
traceback on stderr when the SDK raised something the scenario does not
expect.

Scenarios:
    create        messages.create, with the raw response's headers
    stream        messages.stream: the text as it came, and the final message
    tools         a two-turn tool loop: create with tools, run the tools the
                  model uses, send their results, read the final answer
    tools_stream  the same loop with messages.stream
    image         create with a base64 image block and a text block
    bad_request   create with messages=[]: the status error and its body
"""

import json
import os
import sys
import traceback

import anthropic

HEADERS = [
    "request-id",
    "x-request-id",
    "x-policy-mesh-provider",
    "x-policy-mesh-rule",
    "content-type",
]

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather now in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def client(base_url):
    # No retries: each scenario makes exactly the requests it says.
    return anthropic.Anthropic(base_url=base_url, api_key=os.environ.get("POLICY_MESH_KEY", "x"), max_retries=0, timeout=60)


def blocks(message):
    return [block.model_dump(mode="json", exclude_none=True) for block in message.content]


def create(base_url, model, prompt):
    raw = client(base_url).messages.with_raw_response.create(
        model=model,
        max_tokens=256,
        system="Be brief.",
        messages=[{"role": "user", "content": prompt}],
    )
    message = raw.parse()
    return {
        "status": raw.status_code,
        "headers": {name: raw.headers.get(name) for name in HEADERS},
        "type": message.type,
        "role": message.role,
        "content": blocks(message),
        "stop_reason": message.stop_reason,
        "usage": message.usage.model_dump(mode="json", exclude_none=True),
    }


def stream(base_url, model, prompt):
    with client(base_url).messages.stream(
        model=model,
        max_tokens=256,
        messages=[{"role": "user", "content": prompt}],
    ) as events:
        text = "".join(events.text_stream)
        final = events.get_final_message()
    return {
        "text": text,
        "content": blocks(final),
        "stop_reason": final.stop_reason,
        "usage": final.usage.model_dump(mode="json", exclude_none=True),
    }


def tool_loop(base_url, model, prompt, streamed):
    c = client(base_url)
    conversation = [{"role": "user", "content": prompt}]

    def ask():
        if streamed:
            with c.messages.stream(
                model=model, max_tokens=256, messages=conversation, tools=[WEATHER_TOOL]
            ) as events:
                return events.get_final_message()
        return c.messages.create(
            model=model, max_tokens=256, messages=conversation, tools=[WEATHER_TOOL]
        )

    first = ask()
    uses = [block for block in first.content if block.type == "tool_use"]
    # What an agent does: the model's turn as the SDK parsed it, then a user
    # turn with one result per tool use.
    conversation.append({"role": "assistant", "content": blocks(first)})
    conversation.append({
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": use.id,
             "content": f"18 °C in {use.input['city']}"}
            for use in uses
        ],
    })
    second = ask()
    return {
        "first_stop_reason": first.stop_reason,
        "calls": [{"id": use.id, "name": use.name, "input": use.input} for use in uses],
        "stop_reason": second.stop_reason,
        "content": "".join(b.text for b in second.content if b.type == "text"),
    }


def tools(base_url, model, prompt):
    return tool_loop(base_url, model, prompt, streamed=False)


def tools_stream(base_url, model, prompt):
    return tool_loop(base_url, model, prompt, streamed=True)


PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def image(base_url, model, prompt):
    message = client(base_url).messages.create(
        model=model,
        max_tokens=256,
        messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "text", "text": prompt},
        ]}],
    )
    return {"content": blocks(message), "stop_reason": message.stop_reason}


def bad_request(base_url, model, prompt):
    try:
        client(base_url).messages.create(model=model, max_tokens=16, messages=[])
    except anthropic.APIStatusError as e:
        return {"error": {
            "class": type(e).__name__,
            "status": e.status_code,
            "body": e.body,
        }}
    return {"error": None}


SCENARIOS = {
    "create": create,
    "stream": stream,
    "tools": tools,
    "tools_stream": tools_stream,
    "image": image,
    "bad_request": bad_request,
}


def main(argv):
    if len(argv) != 5 or argv[1] not in SCENARIOS:
        sys.exit(f"usage: {argv[0]} {{{'|'.join(SCENARIOS)}}} BASE_URL MODEL PROMPT")
    _, scenario, base_url, model, prompt = argv
    try:
        result = SCENARIOS[scenario](base_url, model, prompt)
    except Exception as e:  # reported to the Rust test, which fails on it
        traceback.print_exc()
        print(json.dumps({"unexpected": {"class": type(e).__name__, "message": str(e)}}))
        sys.exit(2)
    result["sdk_version"] = anthropic.__version__
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv)
