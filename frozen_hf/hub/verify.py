"""Check that a Frozen checkpoint's language model is, bit for bit, the base language model it declares.

Every LM tensor of the checkpoint and of the base is hashed (sha256 of dtype, shape and raw bytes), names are mapped
between the two layouts (`model.language_model.X` in a Frozen checkpoint is `<base_model_prefix>.X` in the causal LM,
`lm_head.*` is the LM's output embedding, tied weights count as their source), and any tensor that differs or exists
on one side only is reported. Weights are read from the files directly: no model is built beyond an empty (meta device)
skeleton of the base LM, used only to learn its naming.

The command line is `frozen-verify` (`frozen_hf.programs.verify`).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .folder import check_frozen_folder

# The Frozen checkpoint's language model lives here (`FrozenForConditionalGeneration.model.language_model`).
FROZEN_LM_PREFIX = "model.language_model."
FROZEN_HEAD_PREFIX = "lm_head."
_CHUNK = 1 << 24

# safetensors dtype names, so that tensors read through torch (.bin files) hash like tensors read from safetensors.
_TORCH_TO_SAFETENSORS = {
    "torch.float64": "F64", "torch.float32": "F32", "torch.float16": "F16", "torch.bfloat16": "BF16",
    "torch.int64": "I64", "torch.int32": "I32", "torch.int16": "I16", "torch.int8": "I8", "torch.uint8": "U8",
    "torch.bool": "BOOL", "torch.float8_e4m3fn": "F8_E4M3", "torch.float8_e5m2": "F8_E5M2",
}


class VerificationError(RuntimeError):
    """Verification could not run: a checkpoint or base that cannot be found or read."""


@dataclass(frozen=True)
class TensorDigest:
    """What identifies a tensor's content: dtype, shape and the sha256 of dtype, shape and bytes."""

    dtype: str
    shape: tuple[int, ...]
    sha256: str


@dataclass
class TensorMismatch:
    """One LM tensor whose checkpoint copy differs from the base: names on both sides and why."""

    name: str
    checkpoint_name: str
    reason: str


@dataclass
class VerificationReport:
    """The outcome of [`verify_language_model`].

    Attributes:
        checkpoint: the Frozen checkpoint folder.
        base: the base language model (folder or Hub id) it was compared with.
        base_revision: the base's revision, where one applies.
        checked: number of LM tensors compared (names as in the base causal LM).
        differing: tensors present on both sides whose dtype, shape or bytes differ.
        missing_in_checkpoint: base tensors the checkpoint lacks (names as in the base).
        missing_in_base: checkpoint LM tensors the base lacks (names as in the checkpoint).
        notes: facts worth knowing that are not failures (tied weights, trained-parts-only checkpoints).
    """

    checkpoint: str
    base: str
    base_revision: str | None = None
    checked: int = 0
    differing: list[TensorMismatch] = field(default_factory=list)
    missing_in_checkpoint: list[str] = field(default_factory=list)
    missing_in_base: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every LM tensor is identical to the base's and none is missing on either side."""
        return not (self.differing or self.missing_in_checkpoint or self.missing_in_base)

    def summary(self) -> str:
        """A human-readable report, one line per problem."""
        base = self.base + (f" @ {self.base_revision}" if self.base_revision else "")
        lines = [f"checkpoint: {self.checkpoint}", f"base LM:    {base}"]
        lines += [f"note: {note}" for note in self.notes]
        for mismatch in self.differing:
            lines.append(f"DIFFERS  {mismatch.checkpoint_name} (base {mismatch.name}): {mismatch.reason}")
        lines += [f"MISSING in checkpoint: {name}" for name in self.missing_in_checkpoint]
        lines += [f"NOT IN BASE: {name}" for name in self.missing_in_base]
        if self.ok and not self.checked:
            lines.append("OK: the checkpoint holds no language model tensors to differ from the base.")
        elif self.ok:
            lines.append(f"OK: all {self.checked} language model tensors are identical to the base.")
        else:
            problems = len(self.differing) + len(self.missing_in_checkpoint) + len(self.missing_in_base)
            lines.append(
                f"FAILED: {problems} of {self.checked} language model tensors differ from the base or are missing."
            )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


# ---------------------------------------------------------------------------------------------------------------
# Reading and hashing tensors


def _digest(dtype: str, shape: tuple[int, ...], chunks: Iterator[bytes]) -> TensorDigest:
    hasher = hashlib.sha256()
    hasher.update(f"{dtype}|{','.join(map(str, shape))}|".encode())
    for chunk in chunks:
        hasher.update(chunk)
    return TensorDigest(dtype, tuple(shape), hasher.hexdigest())


def _safetensors_digests(path: Path, keep=lambda name: True) -> dict[str, TensorDigest]:
    """Digests of the tensors in one safetensors file, read straight from its bytes (any dtype, no conversion)."""
    with open(path, "rb") as handle:
        try:
            (header_size,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(header_size))
        except (struct.error, ValueError) as err:
            raise VerificationError(f"{path} is not a readable safetensors file ({err}).") from err
        data_start = 8 + header_size
        digests = {}
        for name, info in header.items():
            if name == "__metadata__" or not keep(name):
                continue
            begin, end = info["data_offsets"]
            handle.seek(data_start + begin)

            def chunks(remaining: int = end - begin) -> Iterator[bytes]:
                while remaining > 0:
                    chunk = handle.read(min(_CHUNK, remaining))
                    if not chunk:
                        raise VerificationError(f"{path} is truncated: tensor {name!r} runs past the end of the file.")
                    remaining -= len(chunk)
                    yield chunk

            digests[name] = _digest(info["dtype"], tuple(info["shape"]), chunks())
    return digests


def _torch_digests(path: Path, keep=lambda name: True) -> dict[str, TensorDigest]:
    """Digests of the tensors in a PyTorch pickle (`pytorch_model.bin`), loaded with `weights_only=True`."""
    import torch

    state_dict = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    digests = {}
    for name, tensor in state_dict.items():
        if not keep(name):
            continue
        tensor = tensor.detach().contiguous()
        dtype = _TORCH_TO_SAFETENSORS.get(str(tensor.dtype), str(tensor.dtype))
        raw = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        digests[name] = _digest(dtype, tuple(tensor.shape), iter([raw]))
    return digests


def _weight_files(folder: Path) -> list[Path]:
    """The weight files of a transformers folder: sharded or single safetensors, else PyTorch pickles."""
    for index_name, single in (("model.safetensors.index.json", "model.safetensors"),
                               ("pytorch_model.bin.index.json", "pytorch_model.bin")):
        index = folder / index_name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [folder / shard for shard in shards]
        if (folder / single).is_file():
            return [folder / single]
    raise VerificationError(
        f"No weights found in {folder}: expected model.safetensors, a sharded model.safetensors.index.json, or "
        "pytorch_model.bin."
    )


def read_digests(folder: str | os.PathLike, keep=lambda name: True) -> dict[str, TensorDigest]:
    """Digests of every tensor (whose name `keep` accepts) in a transformers checkpoint folder."""
    digests: dict[str, TensorDigest] = {}
    for path in _weight_files(Path(folder)):
        reader = _safetensors_digests if path.suffix == ".safetensors" else _torch_digests
        digests.update(reader(path, keep))
    return digests


# ---------------------------------------------------------------------------------------------------------------
# Names


@dataclass
class _LanguageModelLayout:
    """How the base causal LM names its tensors: learnt from an empty skeleton built from its config."""

    prefix: str  # base_model_prefix, e.g. "model" (Llama) or "transformer" (GPT-2)
    output_name: str  # module name of the output embedding, e.g. "lm_head" or "embed_out"
    names: set[str]  # every persistent tensor of the causal LM
    tied: dict[str, str]  # target -> source, when the LM ties its output embedding to its input embedding


def _layout(text_config) -> _LanguageModelLayout:
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(text_config)
    modules = {module: name for name, module in model.named_modules()}
    output = model.get_output_embeddings()
    output_name = modules.get(output, "lm_head")
    tied = {}
    if getattr(text_config, "tie_word_embeddings", False) and output is not None:
        input_name = modules[model.get_input_embeddings()]
        tied[f"{output_name}.weight"] = f"{input_name}.weight"
    return _LanguageModelLayout(model.base_model_prefix, output_name, set(model.state_dict()), tied)


def _to_base_name(checkpoint_name: str, layout: _LanguageModelLayout) -> str:
    """`model.language_model.X` -> `<prefix>.X`; `lm_head.W` -> `<output embedding>.W`."""
    if checkpoint_name.startswith(FROZEN_LM_PREFIX):
        return f"{layout.prefix}.{checkpoint_name[len(FROZEN_LM_PREFIX):]}"
    return f"{layout.output_name}.{checkpoint_name[len(FROZEN_HEAD_PREFIX):]}"


def _normalise_base_names(digests: dict[str, TensorDigest], layout: _LanguageModelLayout) -> dict[str, TensorDigest]:
    """Some checkpoints (the original `gpt2`, for one) store the base model without its prefix: add it back."""
    normalised = {}
    for name, digest in digests.items():
        if name not in layout.names and f"{layout.prefix}.{name}" in layout.names:
            name = f"{layout.prefix}.{name}"
        normalised[name] = digest
    return normalised


def _resolve_ties(digests: dict[str, TensorDigest], layout: _LanguageModelLayout) -> list[str]:
    """Fills tied targets that were not saved (transformers saves tied weights once) from their source."""
    filled = []
    for target, source in layout.tied.items():
        if target not in digests and source in digests:
            digests[target] = digests[source]
            filled.append(target)
    return filled


# ---------------------------------------------------------------------------------------------------------------
# Locating the base


def _base_folder(base: str, revision: str | None) -> Path:
    """A local folder holding the base LM's config and weights: `base` itself, or a Hub snapshot of it."""
    if os.path.isdir(base):
        return Path(base)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(
            base, revision=revision,
            allow_patterns=["config.json", "*.safetensors", "model.safetensors.index.json", "pytorch_model.bin*"],
        ))
    except Exception as err:  # network, auth, missing repo or revision: all mean "cannot verify"
        raise VerificationError(f"Cannot fetch the base language model {base!r} (revision {revision}): {err}") from err


def verify_language_model(
    checkpoint: str | os.PathLike, base: str | os.PathLike | None = None, revision: str | None = None
) -> VerificationReport:
    """Compares every language model tensor of a Frozen checkpoint with the base language model's.

    Args:
        checkpoint: a folder saved by `FrozenForConditionalGeneration.save_pretrained` (or a Trainer checkpoint of
            one).
        base: the base causal LM, a folder or Hub id. Defaults to the `language_model_name_or_path` recorded in the
            checkpoint's config.
        revision: the base's Hub revision. Defaults to the recorded `language_model_revision` when `base` is not
            given.

    Returns:
        A [`VerificationReport`]; `report.ok` is True when every LM tensor is identical to the base's.

    Raises:
        VerificationError: the checkpoint or the base cannot be found or read.
    """
    from transformers import AutoConfig

    checkpoint = Path(checkpoint)
    # A Trainer checkpoint-* folder has no processor; the language model's tensors are all this needs.
    config = check_frozen_folder(checkpoint, complete=False, error=VerificationError)
    if base is None:
        base = config.get("language_model_name_or_path")
        revision = revision or config.get("language_model_revision")
        if not base:
            raise VerificationError(
                f"{checkpoint}/config.json does not record its base language model (language_model_name_or_path): "
                "pass it with --base."
            )
    base = str(base)
    report = VerificationReport(checkpoint=str(checkpoint), base=base, base_revision=revision)

    ours = read_digests(checkpoint, keep=lambda name: name.startswith((FROZEN_LM_PREFIX, FROZEN_HEAD_PREFIX)))
    if not ours and config.get("trained_parts_only"):
        report.notes.append(
            "trained-parts-only checkpoint: it holds no language model tensors, so loading it always uses the base "
            "language model itself (from_pretrained checks the recorded revision)."
        )
        return report

    base_folder = _base_folder(base, revision)
    text_config = AutoConfig.from_pretrained(base_folder)
    layout = _layout(text_config)
    theirs = _normalise_base_names(read_digests(base_folder), layout)
    ours = {_to_base_name(name, layout): (name, digest) for name, digest in ours.items()}
    checkpoint_names = {base_name: name for base_name, (name, _) in ours.items()}
    ours_digests = {base_name: digest for base_name, (_, digest) in ours.items()}
    for side, digests in (("checkpoint", ours_digests), ("base", theirs)):
        for target in _resolve_ties(digests, layout):
            report.notes.append(f"{target} is tied to {layout.tied[target]} in the {side} (compared as that tensor).")
            checkpoint_names.setdefault(target, f"{target} (tied)")

    # Only the causal LM's own tensors matter; a base file may carry extras the architecture ignores.
    theirs = {name: digest for name, digest in theirs.items() if name in layout.names or name in ours_digests}
    for name in sorted(set(theirs) | set(ours_digests)):
        if name not in ours_digests:
            report.missing_in_checkpoint.append(name)
        elif name not in theirs:
            report.missing_in_base.append(checkpoint_names.get(name, name))
        else:
            mine, reference = ours_digests[name], theirs[name]
            if mine != reference:
                if mine.dtype != reference.dtype:
                    reason = f"dtype {mine.dtype} vs base {reference.dtype}"
                elif mine.shape != reference.shape:
                    reason = f"shape {list(mine.shape)} vs base {list(reference.shape)}"
                else:
                    reason = f"values differ (sha256 {mine.sha256[:12]} vs base {reference.sha256[:12]})"
                report.differing.append(TensorMismatch(name, checkpoint_names.get(name, name), reason))
        report.checked += 1
    return report
