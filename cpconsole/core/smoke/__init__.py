"""Requests that prove the service works: a streaming client measuring like `vllm bench serve`,
and prompts worth sending (hello, the long-context needle)."""
