"""The official openai SDK's realtime client completes text turns against the gateway unchanged."""

from openai import AsyncOpenAI

from tests.helpers import Stack


async def test_sdk_realtime_text_turns(stack: Stack):
    client = AsyncOpenAI(base_url=f"{stack.http}/v1", api_key="not-needed", max_retries=0)
    async with client.realtime.connect(model="qwen2.5-coder-0.5b-instruct") as conn:
        await conn.session.update(
            session={
                "type": "realtime",
                "output_modalities": ["text"],
                "instructions": "Answer in one short sentence.",
                "temperature": 0,
            }
        )  # type: ignore[typeddict-unknown-key]
        replies = []
        for question in ("What is the capital of France?", "And what is the capital of Italy?"):
            await conn.conversation.item.create(
                item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": question}]}
            )
            await conn.response.create()
            text, done = "", None
            async for event in conn:
                if event.type == "error":
                    raise AssertionError(event.error)
                if event.type == "response.output_text.delta":
                    text += event.delta
                elif event.type == "response.done":
                    done = event
                    break
            assert done is not None and done.response.status == "completed"
            assert done.response.usage is not None and done.response.usage.output_tokens
            replies.append(text)
    assert "Paris" in replies[0]
    assert "Rome" in replies[1]
