"""TTFT of the same server, request by request: vllm bench serve's own request function (the code
`vllm bench serve` measures with) and cpconsole's client, alternating A B B A …, each with its own
random prompt. Run by the vLLM test bed's Python (it has vllm and aiohttp), with cpconsole on
PYTHONPATH; prints {"pairs": [[ours, theirs], ...]} in seconds, a pair for each two requests sent
one after the other.

    python paired_ttft.py BASE_URL MODEL PAIRS PROMPT_WORDS
"""

import asyncio
import json
import random
import sys

import aiohttp
import httpx
from vllm.benchmarks.lib.endpoint_request_func import RequestFuncInput, async_request_openai_completions

from cpconsole.core.smoke.client import stream_request


async def main(base: str, model: str, count: int, words: int) -> None:
    rng = random.Random(11)
    pairs: list[list[float]] = []
    timeout = aiohttp.ClientTimeout(total=60)
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), trust_env=False, timeout=timeout) as session,
        httpx.AsyncClient(trust_env=False, timeout=60) as http,
    ):
        for n in range(count):
            pair = [0.0, 0.0]
            for ours_first in (n % 2 == 0, n % 2 == 1):  # A B, then B A: neither always goes first
                prompt = " ".join(str(rng.randrange(100_000)) for _ in range(words))
                if ours_first:
                    result = await stream_request(
                        http, base, model=model, prompt=prompt, max_tokens=32, temperature=None
                    )
                    assert result.ok and result.ttft_s is not None, result.error
                    pair[0] = result.ttft_s
                else:
                    request = RequestFuncInput(
                        prompt=prompt, api_url=base + "/v1/completions", prompt_len=words, output_len=32, model=model
                    )
                    output = await async_request_openai_completions(request, session)
                    assert output.success, output.error
                    pair[1] = output.ttft
            pairs.append(pair)
    print(json.dumps({"pairs": pairs}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
