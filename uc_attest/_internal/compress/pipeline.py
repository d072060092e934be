"""``uc compress``: a model directory in, a pack out, one tensor (or one block) at a time.

The data-free path codes each linear map independently. The calibrated path
(uc_attest._internal.compress.calibrated) replays decoder blocks one at a time; both hand
finished tensors to the same streaming PackWriter inside an atomic directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from ..version import __version__
from ..architecture import (
    CheckpointKeyMapper,
    TensorRole,
    build_skeleton,
    classify,
    load_config,
)
from ..atomic import atomic_directory, refuse_output_holding_inputs
from ..model_files import LOADER_CONFIG_FILES, LOADER_TOKENIZER_FILES, model_files
from ..errors import UnreadableInputError, UsageError
from ..source_model import SafetensorsSource
from ..safe_io import is_regular_file
from ..pack.manifest import MANIFEST_NAME, CompressionInfo, ModelInfo, PackManifest, SourceInfo
from ..pack.writer import PackWriter
from ..progress import bar_disabled
from .coding import add_datafree, codec_params, passthrough_tensor
from .options import CompressOptions
from .recipe import pinned_threads, rebuild_recipe, with_threads


def tensor_roles(source: SafetensorsSource, config) -> dict[str, TensorRole]:  # type: ignore[no-untyped-def]
    skeleton = build_skeleton(config)
    mapper = CheckpointKeyMapper(skeleton)
    return {key: classify(skeleton, mapper, key, len(source.shape(key))) for key in source.keys()}


def copy_model_files(model_dir: Path, writer: PackWriter) -> list[str]:
    """Every loader file of the source (config, generation config, tokenizer, chat template) into the pack, signed there.

    What a served directory may hold beside the weights is exactly the pack's files (``--deployed``), so whatever
    the source model ships for its loaders travels in the pack.
    """
    tokenizer_files = []
    for name in LOADER_CONFIG_FILES:
        if (model_dir / name).is_file():
            writer.copy_model_file(model_dir / name, "config")
    for name in LOADER_TOKENIZER_FILES:
        if (model_dir / name).is_file():
            writer.copy_model_file(model_dir / name, "tokenizer")
            tokenizer_files.append(name)
    return tokenizer_files


def require_previous_pack(target: Path) -> None:
    """``--force`` replaces only a previous pack (a real directory with its manifest), never another directory."""
    if target.is_symlink() or not target.is_dir() or not is_regular_file(target / MANIFEST_NAME):
        raise UsageError(f"--force replaces only a previous pack, and {target} is not one (no {MANIFEST_NAME}); choose another output")


def compress_model(
    model_dir: str | Path,
    out: str | Path,
    options: CompressOptions,
    progress: bool = True,
    overwrite: bool = False,
    source_name: str | None = None,
    on_start: Callable[[], None] | None = None,
) -> PackManifest:
    """Compress ``model_dir`` into a pack at ``out``, with torch's thread count pinned to ``options.threads`` (see recipe.py).

    ``source_name`` is the label recorded as the source's name (default: the
    directory's name); ``uc compress --reproduce`` passes the original's.
    """
    options = with_threads(options)
    assert options.threads is not None
    with pinned_threads(options.threads):
        return _compress_model(Path(model_dir), out, options, progress, overwrite, source_name, on_start)


def _compress_model(model_dir: Path, out: str | Path, options: CompressOptions, progress: bool, overwrite: bool,
                    source_name: str | None, on_start: Callable[[], None] | None = None) -> PackManifest:  # fmt: skip
    refuse_output_holding_inputs(Path(out), [model_dir])  # before any work: --force must never delete the source
    if overwrite and (Path(out).exists() or Path(out).is_symlink()):
        require_previous_pack(Path(out))
    recipe = rebuild_recipe(options)
    source = SafetensorsSource(model_dir)
    try:
        config = load_config(model_dir / "config.json")
    except Exception as exc:  # noqa: BLE001
        raise UnreadableInputError(f"config.json is not a transformers config: {exc}") from exc
    roles = tensor_roles(source, config)
    source_files = model_files(model_dir)  # the source's identity, recorded in the manifest (before any work: refuses symlinks out)
    if on_start is not None:  # every refusal of the inputs has passed: the caller may announce the work
        on_start()
    allocation: dict[str, str | int | float | bool] = {}
    stream = None
    if options.method == "calibrated":  # one calibration session: the text tokenised once, for sensitivity and coder alike
        from .calibrated import calibration_stream

        stream = calibration_stream(model_dir, options, int(getattr(config, "vocab_size", 0) or 1 << 16))
    if options.target_bpw is not None:
        from .target import allocate_for_target  # the measurement is only imported where it is used

        options, allocation = allocate_for_target(model_dir, source, config, roles, options, Path(out), progress, stream)
    for key, role in roles.items():  # a --bits-for or --block-size-for rule that claims a tensor twice fails now, not mid-way
        if role.quantize:
            codec_params(key, role, options)
    calibration: dict[str, str | int | float | bool] = {}
    with atomic_directory(out, overwrite=overwrite, inputs=[model_dir], replaceable=require_previous_pack) as tmp:
        writer = PackWriter(tmp, shard_bytes=options.shard_bytes)
        tokenizer_files = copy_model_files(model_dir, writer)
        if options.method == "calibrated":
            from .calibrated import compress_calibrated

            calibration = compress_calibrated(model_dir, source, config, roles, writer, options, Path(out), progress, stream) | allocation
        else:
            for key in tqdm(source.keys(), desc="compress", unit="tensor", disable=bar_disabled(progress)):
                role = roles[key]
                tensor = source.load(key)
                if role.quantize:
                    add_datafree(writer, key, tensor, role, options)
                else:
                    writer.add_passthrough(key, passthrough_tensor(tensor, options), role.role)
        manifest = writer.finish(
            ModelInfo(
                model_type=config.model_type,
                architectures=list(getattr(config, "architectures", None) or []),
                tokenizer_files=tokenizer_files,
                source=SourceInfo(name=source_name or model_dir.resolve().name, note=options.source_note, files=source_files),
            ),
            CompressionInfo(method=options.method, bits=options.bits, bits_for=options.bits_for, block_size=options.block_size,
                            block_size_for=options.block_size_for, calibration=calibration, rebuild=recipe),  # fmt: skip
            __version__,
        )
    return manifest
