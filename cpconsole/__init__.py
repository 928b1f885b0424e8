"""cpconsole: an operations console for vLLM-Ascend context-parallel PD deployments."""

__version__ = "0.1.0"
