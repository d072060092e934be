"""The pack manifest (``ucpack.json``): a pydantic model of every field.

The manifest lists every file of the pack with its size and SHA-256 (except
itself) and every tensor of the model: its shape, its reconstruction dtype, how
it is stored (codec tensors or passthrough) and the digest of its reconstruction.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

from pydantic import SerializerFunctionWrapHandler, model_serializer, BaseModel, ConfigDict, Field, field_validator, model_validator

from ..codec.params import CodecParams
from ..model_files import ModelFile
from ..digests import Sha256Hex, TensorDigestText
from .paths import check_relative_path

FORMAT_NAME: Final = "uc-pack"
FORMAT_VERSION = "1.0"
# the minor version that added the codec's incoherence ``transform``; a pack using it declares at least this
TRANSFORM_FORMAT_VERSION = "1.1"
SUPPORTED_MAJOR = 1
MANIFEST_NAME = "ucpack.json"

_TENSOR_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,300}$")

Dim = Annotated[int, Field(ge=0, le=1 << 40)]


def _minor(version: str) -> int:
    return int(version.split(".")[1])


def _uses_transform(tensor: "TensorEntry") -> bool:
    return tensor.codec is not None and tensor.codec.transform is not None


def format_version_for(tensors: list[TensorEntry]) -> str:
    """The lowest version that describes ``tensors``: 1.0 unless one uses the transform (so older packs keep their bytes)."""
    return TRANSFORM_FORMAT_VERSION if any(_uses_transform(t) for t in tensors) else FORMAT_VERSION


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(Strict):
    path: str
    size: int = Field(ge=0)
    sha256: Sha256Hex
    role: Literal["codec", "passthrough", "config", "tokenizer", "other"]

    @field_validator("path")
    @classmethod
    def _safe_path(cls, v: str) -> str:
        check_relative_path(v)
        if v == MANIFEST_NAME:
            raise ValueError("the manifest does not list itself")
        return v


class QuantizedStorage(Strict):
    """Where the codec tensors of one quantized tensor live (keys inside one shard)."""

    file: str
    codes: str
    scales: str
    codebook: str


class PassthroughStorage(Strict):
    file: str
    key: str


class TensorEntry(Strict):
    name: str
    shape: list[Dim]
    dtype: Literal["bfloat16", "float16", "float32", "float64", "int64", "int32", "int16", "int8", "uint8", "bool"]
    kind: Literal["quantized", "passthrough"]
    role: str = Field(description="what the tensor is: linear, conv1d, experts, embedding, norm, other")
    digest: TensorDigestText
    codec: CodecParams | None = None
    storage: QuantizedStorage | PassthroughStorage

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _TENSOR_NAME.match(v):
            raise ValueError(f"bad tensor name {v!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "TensorEntry":
        if self.kind == "quantized":
            if self.codec is None or not isinstance(self.storage, QuantizedStorage):
                raise ValueError(f"{self.name}: a quantized tensor needs codec parameters and codec storage")
            if self.codec.block_axis >= len(self.shape):
                raise ValueError(f"{self.name}: block_axis out of range")
            if self.codec.dtype != self.dtype:
                raise ValueError(f"{self.name}: codec dtype differs from tensor dtype")
            transform = self.codec.transform
            if transform is not None and self.shape[self.codec.block_axis] % transform.size:
                raise ValueError(f"{self.name}: hadamard size {transform.size} does not divide the block axis length")
        else:
            if self.codec is not None or not isinstance(self.storage, PassthroughStorage):
                raise ValueError(f"{self.name}: a passthrough tensor has no codec and one storage key")
        return self


class SourceInfo(Strict):
    name: str = Field(description="where the vendor's model came from (a directory name or hub id)")
    note: str = ""
    # every file of the source model directory at compress time (see uc_attest._internal.model_files); empty in
    # packs made before it was recorded. attest sign --baseline compares the baseline's files with these.
    files: list[ModelFile] = []


class ModelInfo(Strict):
    model_type: str
    architectures: list[str]
    config_file: str = "config.json"
    tokenizer_files: list[str] = []
    source: SourceInfo


OptionValue = str | int | float | bool | None | dict[str, int]


class RebuildRecipe(Strict):
    """What ``uc compress --reproduce`` needs to rebuild this pack byte for byte (written by packs since reproducible builds).

    The options are every option of ``uc compress`` as the vendor gave them
    (before ``--target-bpw`` filled in its allocation; ``calibration_file`` is
    the path it had, the text's SHA-256 is in ``calibration``); the source's
    files and their digests are ``model.source.files``. ``software`` and
    ``machine`` say what the same bytes can be expected from: the same
    versions, the same machine class (CPU architecture and bf16 support, or the
    CUDA device) and ``threads`` intra-op threads. All of it is signed with
    the manifest; none of it is checked by ``uc verify`` (it describes how the
    bytes were made, and only a rebuild checks that).
    """

    options: dict[str, OptionValue]
    software: dict[str, str]
    machine: dict[str, str]
    threads: int = Field(ge=1, le=4096)


class CompressionInfo(Strict):
    method: str
    bits: int
    bits_for: dict[str, int] = {}  # per-tensor widths (checkpoint-key glob -> bits); each tensor's codec says its own
    block_size: int
    block_size_for: dict[str, int] = {}  # per-tensor block sizes (checkpoint-key glob -> weights per scale), as bits_for
    calibration: dict[str, str | int | float | bool] = {}
    rebuild: RebuildRecipe | None = None  # absent in packs made before reproducible builds

    @model_serializer(mode="wrap")
    def _omit_absent_rebuild(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        """No ``rebuild`` key when there is none, so packs made before rebuild recipes keep their manifest bytes."""
        data = handler(self)
        if data.get("rebuild") is None:
            data.pop("rebuild", None)
        return data


class PackStats(Strict):
    quantized_params: int
    passthrough_params: int
    codec_bytes: int
    effective_bits_per_weight: float


class Producer(Strict):
    tool: str = "uc_attest"
    version: str


class PackManifest(Strict):
    format: Literal["uc-pack"] = FORMAT_NAME
    format_version: str = FORMAT_VERSION
    producer: Producer
    model: ModelInfo
    compression: CompressionInfo
    stats: PackStats
    files: list[FileEntry]
    tensors: list[TensorEntry]

    @field_validator("format_version")
    @classmethod
    def _known_major(cls, v: str) -> str:
        m = re.match(r"^(\d+)\.(\d+)$", v)
        if not m:
            raise ValueError("format_version must be MAJOR.MINOR")
        if int(m.group(1)) != SUPPORTED_MAJOR:
            raise ValueError(f"unsupported pack format major version {m.group(1)} (this reader knows {SUPPORTED_MAJOR})")
        return v

    @model_validator(mode="after")
    def _unique_and_referenced(self) -> "PackManifest":
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            raise ValueError("a file is listed twice")
        names = [t.name for t in self.tensors]
        if len(set(names)) != len(names):
            raise ValueError("a tensor is listed twice")
        if self.uses_transform() and _minor(self.format_version) < 1:
            raise ValueError(f"a tensor uses the incoherence transform, which needs format_version {TRANSFORM_FORMAT_VERSION} or later")
        known = set(paths)
        if self.model.config_file not in known:
            raise ValueError("the config file is not among the pack's files")
        for t in self.tensors:
            if t.storage.file not in known:
                raise ValueError(f"{t.name}: storage file {t.storage.file!r} is not among the pack's files")
        return self

    def uses_transform(self) -> bool:
        return any(_uses_transform(t) for t in self.tensors)

    def file(self, path: str) -> FileEntry:
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(path)
