"""Drives Policy Mesh's OpenAI-compatible API with the official OpenAI SDK.

Run by tests/gateway/openai_sdk.rs, one scenario per run:

    python client.py SCENARIO BASE_URL MODEL PROMPT

BASE_URL is the gateway's `http://host:port/v1`. The script makes the calls
of SCENARIO and prints one JSON line describing what the SDK returned or
raised; the Rust test asserts on it. It exits 0 when the scenario ran to
its end (an expected exception included), 2 with a traceback on stderr when
the SDK raised something the scenario does not expect.

Scenarios:
    create       chat.completions.create, with the raw response's headers
    stream       the same with stream=True and include_usage, every chunk
    parts        create with the user content as a list of text parts
    stream_fail  a stream that the upstream breaks: what the SDK raises
    bad_request  create with messages=[]: the status error and its body
    models       models.list()
    tools        a two-turn tool loop: create with tools, run the calls the
                 model makes, send their results, and read the final answer
    tools_stream the same loop streamed, the calls gathered from the deltas
    image        create with a text part and a base64 image_url part
    json_schema  create with response_format json_schema
"""

import json
import os
import sys
import traceback

import openai

HEADERS = [
    "x-request-id",
    "x-policy-mesh-provider",
    "x-policy-mesh-rule",
    "x-policy-mesh-reason",
    "x-policy-mesh-policy-version",
    "content-type",
]


def client(base_url):
    # No retries: each scenario makes exactly the requests it says.
    return openai.OpenAI(base_url=base_url, api_key=os.environ.get("POLICY_MESH_KEY", "x"), max_retries=0, timeout=60)


def headers_of(raw):
    return {name: raw.headers.get(name) for name in HEADERS}


def messages(prompt):
    return [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": prompt},
    ]


def dump(model):
    return None if model is None else model.model_dump(mode="json")


def describe_chunk(chunk):
    choice = chunk.choices[0] if chunk.choices else None
    return {
        "object": chunk.object,
        "choices": len(chunk.choices),
        "role": choice.delta.role if choice else None,
        "content": choice.delta.content if choice else None,
        "finish_reason": choice.finish_reason if choice else None,
        "usage": dump(chunk.usage),
    }


def describe_error(error):
    return {
        "class": type(error).__name__,
        "is_api_error": isinstance(error, openai.APIError),
        "message": getattr(error, "message", str(error)),
        "body": getattr(error, "body", None),
        "type": getattr(error, "type", None),
        "code": getattr(error, "code", None),
        "status": getattr(error, "status_code", None),
    }


def create(base_url, model, prompt, content=None):
    raw = client(base_url).chat.completions.with_raw_response.create(
        model=model,
        messages=content if content is not None else messages(prompt),
    )
    completion = raw.parse()
    choice = completion.choices[0]
    return {
        "status": raw.status_code,
        "headers": headers_of(raw),
        "object": completion.object,
        "model": completion.model,
        "choices": len(completion.choices),
        "role": choice.message.role,
        "content": choice.message.content,
        "finish_reason": choice.finish_reason,
        "usage": dump(completion.usage),
    }


def parts(base_url, model, prompt):
    content = [
        {"type": "text", "text": "Please answer."},
        {"type": "text", "text": prompt},
    ]
    return create(base_url, model, prompt, [{"role": "user", "content": content}])


def open_stream(base_url, model, prompt):
    raw = client(base_url).chat.completions.with_raw_response.create(
        model=model,
        messages=messages(prompt),
        stream=True,
        stream_options={"include_usage": True},
    )
    return raw, raw.parse()


def stream(base_url, model, prompt):
    raw, chunks = open_stream(base_url, model, prompt)
    with chunks:
        described = [describe_chunk(chunk) for chunk in chunks]
    return {"status": raw.status_code, "headers": headers_of(raw), "chunks": described}


def stream_fail(base_url, model, prompt):
    raw, chunks = open_stream(base_url, model, prompt)
    described = []
    error = None
    try:
        with chunks:
            for chunk in chunks:
                described.append(describe_chunk(chunk))
    except openai.OpenAIError as e:
        error = describe_error(e)
    return {
        "status": raw.status_code,
        "headers": headers_of(raw),
        "chunks": described,
        "error": error,
    }


def bad_request(base_url, model, prompt):
    try:
        client(base_url).chat.completions.create(model=model, messages=[])
    except openai.APIStatusError as e:
        result = describe_error(e)
        try:
            result["response_body"] = e.response.json()
        except ValueError:
            result["response_body"] = e.response.text
        result["headers"] = {name: e.response.headers.get(name) for name in HEADERS}
        return {"error": result}
    return {"error": None}


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather now in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def tools(base_url, model, prompt):
    c = client(base_url)
    conversation = messages(prompt)
    first = c.chat.completions.create(
        model=model, messages=conversation, tools=[WEATHER_TOOL]
    )
    asked = first.choices[0].message
    calls = [
        {"id": call.id, "name": call.function.name,
         "arguments": json.loads(call.function.arguments)}
        for call in asked.tool_calls or []
    ]
    # What an agent does: the model's message as the SDK parsed it, then
    # one result per call.
    conversation.append(asked.model_dump(exclude_none=True))
    for call in calls:
        conversation.append({
            "role": "tool",
            "tool_call_id": call["id"],
            "content": f"18 °C in {call['arguments']['city']}",
        })
    second = c.chat.completions.create(
        model=model, messages=conversation, tools=[WEATHER_TOOL]
    )
    return {
        "first_finish_reason": first.choices[0].finish_reason,
        "first_content": asked.content,
        "calls": calls,
        "finish_reason": second.choices[0].finish_reason,
        "content": second.choices[0].message.content,
    }


def tools_stream(base_url, model, prompt):
    c = client(base_url)
    conversation = messages(prompt)
    calls = {}
    first_finish = None
    with c.chat.completions.create(
        model=model, messages=conversation, tools=[WEATHER_TOOL], stream=True
    ) as chunks:
        for chunk in chunks:
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            first_finish = choice.finish_reason or first_finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
                if delta.id:
                    call["id"] = delta.id
                if delta.function and delta.function.name:
                    call["name"] = delta.function.name
                if delta.function and delta.function.arguments:
                    call["arguments"] += delta.function.arguments
    ordered = [calls[i] for i in sorted(calls)]
    conversation.append({
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": call["id"], "type": "function",
             "function": {"name": call["name"], "arguments": call["arguments"]}}
            for call in ordered
        ],
    })
    for call in ordered:
        city = json.loads(call["arguments"])["city"]
        conversation.append(
            {"role": "tool", "tool_call_id": call["id"], "content": f"18 °C in {city}"}
        )
    text = ""
    finish = None
    with c.chat.completions.create(
        model=model, messages=conversation, tools=[WEATHER_TOOL], stream=True
    ) as chunks:
        for chunk in chunks:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
    return {
        "first_finish_reason": first_finish,
        "calls": [
            {"id": call["id"], "name": call["name"],
             "arguments": json.loads(call["arguments"])}
            for call in ordered
        ],
        "finish_reason": finish,
        "content": text,
    }


PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def image(base_url, model, prompt):
    content = [
        {"type": "text", "text": prompt},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    return create(base_url, model, prompt, [{"role": "user", "content": content}])


def json_schema(base_url, model, prompt):
    completion = client(base_url).chat.completions.create(
        model=model,
        messages=messages(prompt),
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "answer",
                "schema": {"type": "object", "properties": {"answer": {"type": "string"}}},
            },
        },
    )
    return {"content": completion.choices[0].message.content}


def models(base_url, model, prompt):
    page = client(base_url).models.list()
    return {"data": [dump(m) for m in page.data]}


SCENARIOS = {
    "create": create,
    "stream": stream,
    "parts": parts,
    "stream_fail": stream_fail,
    "bad_request": bad_request,
    "models": models,
    "tools": tools,
    "tools_stream": tools_stream,
    "image": image,
    "json_schema": json_schema,
}


def main(argv):
    if len(argv) != 5 or argv[1] not in SCENARIOS:
        sys.exit(f"usage: {argv[0]} {{{'|'.join(SCENARIOS)}}} BASE_URL MODEL PROMPT")
    _, scenario, base_url, model, prompt = argv
    try:
        result = SCENARIOS[scenario](base_url, model, prompt)
    except Exception as e:  # reported to the Rust test, which fails on it
        traceback.print_exc()
        print(json.dumps({"unexpected": describe_error(e)}))
        sys.exit(2)
    result["sdk_version"] = openai.__version__
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv)
