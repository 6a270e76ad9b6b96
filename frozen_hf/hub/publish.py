"""Publishing a trained Frozen model to the Hugging Face Hub in one commit (the library side of `frozen-push`).

`publish(output_dir, repo_id)` pushes a training output folder as one commit: the model (full, or with
`trained_parts_only=True` only the vision encoder and projection, the language model referenced by Hub id and commit),
the processor, the remote code that lets stock transformers load it with `trust_remote_code=True`, the model card
(README.md) and the card's images, the training log and the evaluation report.

The command line is `frozen-push` (`frozen_hf.programs.push`).

Everything that can be checked locally (the folder, the repo id, the token, the card) is checked before anything is
uploaded. Unchanged files are not uploaded again, and a push that changes nothing makes no commit.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import CommitInfo, HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, RevisionNotFoundError
from huggingface_hub.utils import validate_repo_id

from .card_data import collect_card_assets
from .folder import check_frozen_folder
from .model_card import build_model_card
from ..constants import AUTO_MAP, REMOTE_CODE_FILES, TRAINED_PARTS

__all__ = [
    "CommitFailedError",
    "InvalidOutputFolderError",
    "InvalidRepoIdError",
    "MissingTokenError",
    "PublishError",
    "check_repo_id",
    "publish",
    "stage_output_folder",
]

logger = logging.getLogger(__name__)

# The model files ship from the package root, one level above this sub-package.
PACKAGE_DIR = Path(__file__).resolve().parent.parent
# Top-level files of an output folder that belong in the repo; checkpoints, optimizer states, TensorBoard runs and
# the training arguments pickle stay behind.
_PUBLISHED_SUFFIXES = (".json", ".safetensors", ".jinja", ".txt", ".model", ".tiktoken")
_NOT_PUBLISHED = {
    "training_args.bin", "trainer_state.json", "README.md",
    # The training program's bookkeeping (run record, counters, checkpoint markers).
    "frozen_run.json", "frozen_counters.json", "frozen_checkpoint_complete.json",
}
WEIGHT_PATTERNS = ["model*.safetensors", "model.safetensors.index.json"]
# The evaluation numbers behind the card's results table and model-index.
EVAL_RESULTS_FILE = "eval_results.json"


class PublishError(RuntimeError):
    """Publishing a Frozen model failed; the message says what happened and what to do."""


class InvalidOutputFolderError(PublishError, ValueError):
    """The folder is not a Frozen model output folder."""


class InvalidRepoIdError(PublishError, ValueError):
    """The repo id is not of the form `namespace/name`."""


class MissingTokenError(PublishError):
    """No Hugging Face token was given or found."""


class CommitFailedError(PublishError):
    """The Hub refused or failed the upload; the message says in which state the repo was left."""


# ----------------------------------------------------------------------------------------------- checks


def check_repo_id(repo_id: Any) -> str:
    """`repo_id` if it is a valid `namespace/name` model repo id, else `InvalidRepoIdError`."""
    problem = None
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        problem = "it must be 'namespace/name', e.g. 'your-username/frozen-shapes' (one '/')"
    else:
        try:
            validate_repo_id(repo_id)
        except HFValidationError as err:
            problem = str(err)
    if problem:
        raise InvalidRepoIdError(f"Invalid Hub repo id {repo_id!r}: {problem}. Nothing was uploaded.")
    return repo_id


def resolve_token(token: str | None) -> str:
    """The token to write with: `token`, else `HF_TOKEN` / the stored login; `MissingTokenError` if none."""
    token = token or get_token()
    if not token:
        raise MissingTokenError(
            "Publishing needs a Hugging Face token with write access, and none was found. Pass token=... "
            "(--token), set the HF_TOKEN environment variable, or run `hf auth login`. Nothing was uploaded."
        )
    return token


# ----------------------------------------------------------------------------------------------- staging


def _patch_auto_map(folder: Path) -> None:
    """Adds the remote-code `auto_map` where a saved file lacks it (folders saved without `import frozen_hf`)."""
    for name, entries in AUTO_MAP.items():
        path = folder / name
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        auto_map = dict(data.get("auto_map") or {})
        merged = {**entries, **auto_map}
        if merged != auto_map:
            data["auto_map"] = merged
            path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _copy_model_files(source: Path, target: Path, *, weights: bool) -> None:
    for path in sorted(source.iterdir()):
        if not path.is_file() or path.name in _NOT_PUBLISHED or not path.name.endswith(_PUBLISHED_SUFFIXES):
            continue
        if not weights and (path.name == "config.json" or path.name.startswith("model") and "safetensors" in path.name):
            continue
        shutil.copy2(path, target / path.name)
    # The package's own model files, so the repo's code always matches the library that wrote the weights.
    for name in REMOTE_CODE_FILES:
        shutil.copy2(PACKAGE_DIR / name, target / name)


def resolve_language_model(
    config: Any, repo_id: str | None, revision: str | None, token: str | None
) -> tuple[str, str]:
    """The Hub id and commit of the language model a trained-parts-only checkpoint references."""
    name = repo_id or config.language_model_name_or_path
    if not name or os.path.exists(name) or name.count("/") != 1:
        raise PublishError(
            f"A trained-parts-only checkpoint references its language model by Hub id, but this model's language "
            f"model is {name!r}, not a Hub repo id (a local folder, e.g. a bundled LM). Push that language model "
            "to the Hub first and pass its id (language_model_repo_id= / --language-model-repo), or publish the "
            "full checkpoint (the default). Nothing was uploaded."
        )
    revision = revision or (config.language_model_revision if not repo_id else None)
    try:
        sha = HfApi(token=token).model_info(name, revision=revision, token=token).sha
    except RevisionNotFoundError as err:
        raise PublishError(
            f"The language model {name!r} has no revision {revision!r} on the Hub, so the trained weights cannot be "
            "published against it. Nothing was uploaded."
        ) from err
    except HfHubHTTPError as err:
        raise PublishError(f"Cannot read the language model repo {name!r} on the Hub: {err}. Nothing was uploaded.") from err
    if not sha:
        raise PublishError(f"The Hub did not say which commit {name!r} at {revision!r} is. Nothing was uploaded.")
    return name, sha


def _check_language_model_matches(output_dir: Path, name: str, revision: str) -> None:
    """Refuses to publish vision weights against a Hub LM whose tensors differ from the ones they were trained with
    (e.g. a bundled, de-quantized LM referenced by the id of the original)."""
    from .verify import VerificationError, verify_language_model

    try:
        report = verify_language_model(output_dir, base=name, revision=revision)
    except VerificationError as err:
        raise PublishError(f"Cannot check the language model against {name!r}: {err}. Nothing was uploaded.") from err
    if not report.ok:
        problems = [m.checkpoint_name for m in report.differing] + report.missing_in_checkpoint + report.missing_in_base
        raise PublishError(
            f"The language model in this output folder differs from {name!r} at revision {revision} "
            f"({len(problems)} tensors, e.g. {problems[:3]}): a trained-parts-only checkpoint would load its vision "
            "weights on the wrong LM. Reference the exact LM the model was trained with, or publish the full "
            "checkpoint (the default). Nothing was uploaded."
        )


def _write_trained_parts(source: Path, target: Path, name: str, revision: str) -> None:
    """The trained tensors of a full checkpoint as `model.safetensors`, and its config marked trained-parts-only.

    Read from the files rather than a loaded model, so that a large LM is never loaded to publish a few MB.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    prefixes = tuple(f"model.{part}" for part in TRAINED_PARTS)
    tensors = {}
    for path in sorted(source.glob("model*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                if key.startswith(prefixes):
                    tensors[key] = handle.get_tensor(key)
    if not tensors:
        raise InvalidOutputFolderError(f"{source} holds no vision encoder or projection weights to publish.")
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((source / "config.json").read_text())
    config.update(trained_parts_only=True, language_model_name_or_path=name, language_model_revision=revision)
    (target / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def stage_output_folder(
    output_dir: str | os.PathLike,
    staging_dir: str | os.PathLike,
    repo_id: str,
    *,
    eval_report: str | os.PathLike | Mapping[str, Any] | None = None,
    trained_parts_only: bool = False,
    language_model_repo_id: str | None = None,
    language_model_revision: str | None = None,
    license: str | None = None,
    datasets: Sequence[str] | None = None,
    verify_language_model: bool = True,
    token: str | None = None,
) -> Path:
    """Writes into `staging_dir` exactly what `publish` uploads; returns it. No upload happens here.

    Full checkpoints are copied byte for byte (so a second push finds nothing changed); trained-parts-only
    checkpoints keep the trained tensors only, with the LM's Hub id and commit in the config.
    """
    check_frozen_folder(output_dir, error=InvalidOutputFolderError)
    source = Path(output_dir)
    target = Path(staging_dir)
    target.mkdir(parents=True, exist_ok=True)
    config_json = json.loads((source / "config.json").read_text())
    lm_id = lm_revision = None

    if trained_parts_only or config_json.get("trained_parts_only"):
        from ..configuration_frozen import FrozenConfig

        config = FrozenConfig.from_pretrained(source)
        if not config.freeze_language_model or config.language_model_modification:
            raise PublishError(
                "This model's language model was changed by training (freeze_language_model=false, or a LoRA / "
                "from-scratch ablation), so it differs from the pretrained one: publish the full checkpoint. "
                "Nothing was uploaded."
            )
        lm_id, lm_revision = resolve_language_model(config, language_model_repo_id, language_model_revision, token)
        _copy_model_files(source, target, weights=False)
        if verify_language_model and not config_json.get("trained_parts_only"):
            _check_language_model_matches(source, lm_id, lm_revision)
        _write_trained_parts(source, target, lm_id, lm_revision)
        trained_parts_only = True
    else:
        _copy_model_files(source, target, weights=True)
    _patch_auto_map(target)

    assets = collect_card_assets(source, eval_report)
    for repo_path, local in assets.files.items():
        destination = target / repo_path
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(local, destination)
    results = assets.eval_results_json()
    if results is not None:
        (target / EVAL_RESULTS_FILE).write_text(results)
    card = build_model_card(
        source,
        assets.eval_report,
        repo_id=repo_id,
        trained_parts_only=trained_parts_only,
        language_model_repo_id=lm_id,
        language_model_revision=lm_revision,
        license=license,
        datasets=datasets,
    )
    card.save(target / "README.md")
    return target


# ----------------------------------------------------------------------------------------------- publish


def _head(api: HfApi, repo_id: str, revision: str, token: str) -> str | None:
    try:
        return api.repo_info(repo_id, revision=revision, token=token).sha
    except HfHubHTTPError:
        return None


def _describe_http_error(err: HfHubHTTPError) -> str:
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    server = getattr(err, "server_message", None) or str(err).splitlines()[0]
    return f"HTTP {status}: {server}" if status else server


def publish(
    output_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    token: str | None = None,
    trained_parts_only: bool = False,
    create_pr: bool = False,
    eval_report: str | os.PathLike | Mapping[str, Any] | None = None,
    language_model_repo_id: str | None = None,
    language_model_revision: str | None = None,
    license: str | None = None,
    datasets: Sequence[str] | None = None,
    verify_language_model: bool = True,
) -> CommitInfo:
    """Publishes a Frozen training output folder to the Hub in one commit.

    Args:
        output_dir: the training program's final output folder (or any folder holding a saved Frozen model and
            processor; a training log JSON, a loss-curve PNG and an evaluation report are added to the card when
            present).
        repo_id: `namespace/name`; the model repo is created if it does not exist (`private` applies then only).
        revision: the branch to commit to (created from `main` if missing); default `main`.
        commit_message / commit_description: the commit's title and body.
        token: a write token; default `HF_TOKEN` or the stored login.
        trained_parts_only: upload only the vision encoder and projection (a few MB); the config references the
            language model by Hub id and commit, and loading fetches it from there and checks the commit.
        create_pr: open a pull request instead of committing to the branch.
        eval_report: the evaluation results for the card's table and `model-index`: a `frozen-eval --output`
            folder, its `results.json`, a report JSON or dict (see `frozen_hf.hub.card_data`); default: one found in
            `output_dir` (`evaluation/`, `eval/`, `eval_report.json`).
        language_model_repo_id / language_model_revision: the LM's Hub id and revision for a trained-parts-only
            checkpoint, where the model's config does not name a Hub LM (default: the config's).
        license / datasets: card metadata where the LM and the training log do not say.
        verify_language_model: for trained-parts-only, check with `frozen_hf.hub.verify` that every tensor of the Hub
            LM equals the trained model's (downloads the LM's weights once) before uploading.

    Returns:
        The `CommitInfo` of the commit; when nothing changed, no commit is made and its `oid` is the current head.

    Raises:
        InvalidRepoIdError, InvalidOutputFolderError, MissingTokenError: before anything is uploaded.
        CommitFailedError: the Hub failed the upload; the message says whether the branch was left unchanged.
    """
    check_repo_id(repo_id)
    check_frozen_folder(output_dir, error=InvalidOutputFolderError)
    folder = Path(output_dir)
    token = resolve_token(token)
    api = HfApi(token=token)
    branch = revision or "main"

    with tempfile.TemporaryDirectory(prefix="frozen-publish-") as staging:
        stage = stage_output_folder(
            folder,
            staging,
            repo_id,
            eval_report=eval_report,
            trained_parts_only=trained_parts_only,
            language_model_repo_id=language_model_repo_id,
            language_model_revision=language_model_revision,
            license=license,
            datasets=datasets,
            verify_language_model=verify_language_model,
            token=token,
        )
        from huggingface_hub import ModelCard

        try:
            ModelCard.load(stage / "README.md").validate()
        except ValueError as err:
            raise PublishError(f"The model card's metadata was rejected by the Hub: {err}. Nothing was uploaded.") from err

        try:
            api.create_repo(repo_id, private=private, exist_ok=True, token=token)
            if branch != "main":
                api.create_branch(repo_id, branch=branch, exist_ok=True, token=token)
        except HfHubHTTPError as err:
            raise CommitFailedError(
                f"Could not create or open the repo {repo_id!r} (branch {branch!r}): {_describe_http_error(err)}. "
                "Check that the token has write access to that namespace. Nothing was uploaded."
            ) from err

        before = _head(api, repo_id, branch, token)
        message = commit_message or f"Upload Frozen model{' (trained parts only)' if trained_parts_only else ''}"
        try:
            info = api.upload_folder(
                repo_id=repo_id,
                folder_path=stage,
                commit_message=message,
                commit_description=commit_description,
                revision=branch,
                create_pr=create_pr,
                token=token,
                # Weights from an earlier push in another layout (full vs trained parts, other shards) must go.
                delete_patterns=WEIGHT_PATTERNS,
            )
        except HfHubHTTPError as err:
            after = _head(api, repo_id, branch, token)
            if after is not None and after == before:
                state = (
                    f"Nothing was committed: branch {branch!r} of {repo_id} is still at its previous commit "
                    f"{before}. Files already uploaded are kept by the Hub and skipped when you run the same "
                    "push again."
                )
            elif after is None:
                state = f"The state of branch {branch!r} could not be checked afterwards (it was at {before})."
            else:
                state = f"Branch {branch!r} moved from {before} to {after} meanwhile (another push?)."
            raise CommitFailedError(f"Publishing to {repo_id} failed: {_describe_http_error(err)}. {state}") from err
    if info.oid == before:
        logger.warning(f"{repo_id}@{branch} already holds these files: no new commit ({before}).")
    return info
