"""Numbers from the nodes and servers: npu-smi, vLLM /metrics, windows over them."""
