"""What a model config imports (AISBench's ais_bench/benchmark/models)."""


class VLLMCustomAPIChat:
    """The OpenAI-compatible chat client of AISBench's vllm_api configs."""
