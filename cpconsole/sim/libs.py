"""The shared libraries a simulated node's torch_npu loads. A real torch_npu links against CANN's
(libhccl.so, found through the toolkit's set_env.sh) and the driver's (libascend_hal.so, which the
vllm-ascend images add to LD_LIBRARY_PATH in ~/.bashrc): a shell that did not prepare the
environment fails at `import torch_npu`, and with it `vllm serve`.

CPCONSOLE_SIM_NEED_LIBS names the libraries (comma-separated) a simulated image or node needs; each
must be a file in a directory of LD_LIBRARY_PATH, as the dynamic loader looks for it."""

from __future__ import annotations

import os


def missing() -> str | None:
    """The first needed library that LD_LIBRARY_PATH does not lead to."""
    folders = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    for name in filter(None, (n.strip() for n in os.environ.get("CPCONSOLE_SIM_NEED_LIBS", "").split(","))):
        if not any(os.path.isfile(os.path.join(folder, name)) for folder in folders):
            return name
    return None


def import_error(library: str) -> str:
    """torch_npu's message for a library it cannot load (Ascend/pytorch: torch_npu/__init__.py wraps
    the loader's ImportError; quoted in vllm-ascend#262 and LinZhekai/X-Oscar#4)."""
    return (
        f"{library}: cannot open shared object file: No such file or directory. Please check that the cann "
        "package is installed. Please run 'source set_env.sh' in the CANN installation path."
    )


def check_import() -> None:
    """What the simulated torch_npu does on import."""
    library = missing()
    if library is not None:
        raise ImportError(import_error(library))


def traceback_lines(library: str) -> list[str]:
    """What `vllm serve` prints when the platform plugin's torch_npu import fails."""
    return [
        "Traceback (most recent call last):",
        '  File "/usr/local/python3.11.13/lib/python3.11/site-packages/torch_npu/__init__.py", line 19, in <module>',
        "    from torch_npu.utils._error_code import ErrCode, pta_error",
        f"ImportError: {import_error(library)}",
    ]
