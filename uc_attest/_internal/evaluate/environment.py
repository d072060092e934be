"""What the measurement ran on: software versions, hardware, dtype, threads, determinism settings.

Perplexity is not bit-reproducible across machines (matmul summation order
depends on the CPU, the thread count, the GPU and the library build). When a
customer's re-measurement differs from the vendor's, this record is what tells
whether the difference is expected (other hardware class, other thread count)
or suspicious (same everything, different number).
"""

from __future__ import annotations

import os
import platform
import re
from importlib import metadata
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

_PACKAGES = ("torch", "transformers", "uc_attest", "numpy", "safetensors", "tokenizers")
_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "CUBLAS_WORKSPACE_CONFIG",
    "CUDA_VISIBLE_DEVICES",
    "PYTHONHASHSEED",
)


class EnvironmentInfo(BaseModel):
    """The environment of one measurement. Every field is recorded, none is interpreted here."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, alias_generator=to_camel)

    python: str = Field(description="Python version, e.g. 3.11.9")
    python_implementation: str
    os: str = Field(description="platform.platform()")
    machine: str = Field(description="CPU architecture, e.g. x86_64")
    packages: dict[str, str] = Field(description="versions of torch, transformers, uc_attest, ...")
    device: str = Field(description="where the model ran: cpu or cuda:N")
    cpu_model: str
    cpu_count: int
    gpu_model: str | None = None
    cuda_version: str | None = None
    cudnn_version: str | None = None
    dtype: str = Field(description="dtype of the model's parameters during evaluation")
    threads: int = Field(description="torch.get_num_threads()")
    interop_threads: int
    deterministic_algorithms: bool
    deterministic_warn_only: bool
    cudnn_deterministic: bool
    cudnn_benchmark: bool
    float32_matmul_precision: str
    env: dict[str, str] = Field(default_factory=dict, description="thread and determinism environment variables that were set")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def cpu_model() -> str:
    """A human-readable CPU model name (``/proc/cpuinfo`` on Linux, platform otherwise)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                m = re.match(r"^(model name|Hardware|cpu model)\s*:\s*(.+)$", line)
                if m:
                    return m.group(2).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def capture_environment(model: Any | None = None, *, device: str | None = None, dtype: str | None = None) -> EnvironmentInfo:
    """Record the environment of a measurement made with ``model`` (device and dtype are read from it).

    ``device`` and ``dtype`` override what the model says; without a model they
    default to ``cpu`` and ``float32``.
    """
    import torch

    if model is not None:
        try:
            param = next(iter(model.parameters()))
            device = device or str(param.device)
            dtype = dtype or str(param.dtype).removeprefix("torch.")
        except (StopIteration, AttributeError, TypeError):
            pass
    device = device or "cpu"
    dtype = dtype or "float32"

    gpu = cuda = cudnn = None
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        gpu = torch.cuda.get_device_name(index)
        cuda = torch.version.cuda
        cudnn_v = torch.backends.cudnn.version()
        cudnn = str(cudnn_v) if cudnn_v is not None else None

    return EnvironmentInfo(
        python=platform.python_version(),
        python_implementation=platform.python_implementation(),
        os=platform.platform(),
        machine=platform.machine(),
        packages={name: _version(name) for name in _PACKAGES},
        device=device,
        cpu_model=cpu_model(),
        cpu_count=os.cpu_count() or 0,
        gpu_model=gpu,
        cuda_version=cuda,
        cudnn_version=cudnn,
        dtype=dtype,
        threads=torch.get_num_threads(),
        interop_threads=torch.get_num_interop_threads(),
        deterministic_algorithms=torch.are_deterministic_algorithms_enabled(),
        deterministic_warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
        cudnn_deterministic=bool(torch.backends.cudnn.deterministic),
        cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
        float32_matmul_precision=torch.get_float32_matmul_precision(),
        env={k: os.environ[k] for k in _ENV_VARS if k in os.environ},
    )
