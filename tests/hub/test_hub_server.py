"""The loopback Hub server against the real `huggingface_hub` client and `transformers`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from huggingface_hub import (
    CommitOperationAdd,
    HfApi,
    ModelCard,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import get_session

REPO = "user/demo"
BIG = 11 * 1024 * 1024  # above the Hub's 10 MB regular-file limit: must travel through LFS


def _make_folder(root: Path, *, text: str = "hello hub\n", big: bytes | None = None) -> Path:
    folder = root / "folder"
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text(text)
    (folder / "sub" / "config.json").write_text(json.dumps({"a": 1}))
    (folder / "weights.bin").write_bytes(big if big is not None else os.urandom(BIG))
    return folder


def _commit_ids(api: HfApi, repo_id: str, revision: str = "main") -> list[str]:
    return [c.commit_id for c in api.list_repo_commits(repo_id, revision=revision)]


def test_whoami_and_create_repo(hub_server) -> None:
    api = HfApi()
    assert api.whoami()["name"] == hub_server.user
    url = api.create_repo(REPO)
    assert url.repo_id == REPO and url.startswith(hub_server.url)
    # exists: 409, which exist_ok turns into success
    assert api.create_repo(REPO, exist_ok=True).repo_id == REPO
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(REPO)
    assert err.value.response.status_code == 409
    # the Hub starts every repo with `.gitattributes` on main
    info = api.model_info(REPO)
    assert [s.rfilename for s in info.siblings] == [".gitattributes"]
    assert info.private is False and len(info.sha) == 40
    # other namespaces are not writable, bad names are rejected
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo("someone-else/demo")
    assert err.value.response.status_code == 403
    # the client validates names itself; the server checks too, for raw callers
    resp = get_session().post(
        f"{hub_server.url}/api/repos/create",
        json={"name": "bad--name", "organization": "user", "type": "model"},
        headers={"Authorization": f"Bearer {hub_server.token}"},
    )
    assert resp.status_code == 400


def test_upload_folder_lfs_listing_and_download_roundtrip(hub_server, tmp_path: Path) -> None:
    api = HfApi()
    api.create_repo(REPO)
    big = os.urandom(BIG)
    folder = _make_folder(tmp_path, big=big)
    info = api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="Add files")
    assert len(info.oid) == 40 and hub_server.head(REPO) == info.oid

    # the big binary went through the LFS batch API + upload + verify, the text files inline
    paths = [p for _, p in hub_server.requests]
    assert any(p.endswith(".git/info/lfs/objects/batch") for p in paths)
    assert any(p.startswith("/_lfs/upload/") for p in paths)
    assert any(p.startswith("/_lfs/verify/") for p in paths)
    blobs = hub_server.repo(REPO).commits[info.oid].files
    assert blobs["weights.bin"].lfs and not blobs["notes.txt"].lfs and not blobs["sub/config.json"].lfs

    assert sorted(api.list_repo_files(REPO)) == [".gitattributes", "notes.txt", "sub/config.json", "weights.bin"]
    tree = {f.path: f for f in api.list_repo_tree(REPO, recursive=True)}
    assert tree["weights.bin"].lfs.size == BIG and tree["weights.bin"].size == BIG
    assert tree["notes.txt"].lfs is None
    top = {f.path for f in api.list_repo_tree(REPO)}
    assert top == {".gitattributes", "notes.txt", "sub", "weights.bin"}
    assert {f.path for f in api.list_repo_tree(REPO, path_in_repo="sub")} == {"sub/config.json"}
    assert api.file_exists(REPO, "sub/config.json") and not api.file_exists(REPO, "nope.txt")

    local = hf_hub_download(REPO, "weights.bin")
    assert Path(local).read_bytes() == big
    assert Path(hf_hub_download(REPO, "notes.txt")).read_text() == "hello hub\n"
    snap = Path(snapshot_download(REPO))
    assert snap.name == info.oid
    assert (snap / "weights.bin").read_bytes() == big
    assert (snap / "sub" / "config.json").read_text() == json.dumps({"a": 1})
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "missing.txt")
    assert hub_server.unhandled == []


def test_revisions_by_branch_and_commit(hub_server, tmp_path: Path) -> None:
    api = HfApi()
    api.create_repo(REPO)
    first = api.upload_file(path_or_fileobj=b"v1", path_in_repo="f.txt", repo_id=REPO, commit_message="v1").oid
    api.create_branch(REPO, branch="dev")
    with pytest.raises(HfHubHTTPError) as err:
        api.create_branch(REPO, branch="dev")
    assert err.value.response.status_code == 409
    api.create_branch(REPO, branch="dev", exist_ok=True)
    second = api.upload_file(
        path_or_fileobj=b"v2", path_in_repo="f.txt", repo_id=REPO, revision="dev", commit_message="v2"
    ).oid

    assert hub_server.head(REPO, "main") == first and hub_server.head(REPO, "dev") == second
    assert Path(hf_hub_download(REPO, "f.txt")).read_bytes() == b"v1"
    assert Path(hf_hub_download(REPO, "f.txt", revision="dev")).read_bytes() == b"v2"
    assert Path(hf_hub_download(REPO, "f.txt", revision=first)).read_bytes() == b"v1"
    assert Path(hf_hub_download(REPO, "f.txt", revision=second, force_download=True)).read_bytes() == b"v2"
    assert api.model_info(REPO, revision="dev").sha == second
    assert api.model_info(REPO, revision=first).sha == first
    assert Path(snapshot_download(REPO, revision="dev")).name == second
    assert {b.name for b in api.list_repo_refs(REPO).branches} == {"main", "dev"}
    assert _commit_ids(api, REPO, "dev")[:2] == [second, first]
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "f.txt", revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        api.model_info(REPO, revision="no-such-branch")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("user/no-such-repo")
    # uploads go to existing branches only (the client's callers create them first)
    with pytest.raises(RevisionNotFoundError):
        api.upload_file(path_or_fileobj=b"v3", path_in_repo="f.txt", repo_id=REPO, revision="nope", commit_message="v3")


def test_same_folder_twice_makes_no_second_commit(hub_server, tmp_path: Path) -> None:
    api = HfApi()
    api.create_repo(REPO)
    folder = _make_folder(tmp_path)
    first = api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="one")
    commits = _commit_ids(api, REPO)
    n_requests = len(hub_server.requests)
    again = api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="two")
    assert again.oid == first.oid and _commit_ids(api, REPO) == commits
    # preupload's `oid`s told the client nothing changed and the LFS batch answered "already
    # stored": no object upload, no commit request
    later = [p for _, p in hub_server.requests[n_requests:]]
    assert not any("/commit/" in p or p.startswith("/_lfs/") for p in later)

    # one changed file: a commit with the change only
    (folder / "notes.txt").write_text("changed\n")
    third = api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="three")
    assert third.oid != first.oid and _commit_ids(api, REPO)[:2] == [third.oid, first.oid]

    # and the server itself makes no empty commit if a client sends only unchanged files
    payload = [
        {"key": "header", "value": {"summary": "noop", "description": ""}},
        {"key": "file", "value": {"path": "notes.txt", "content": "Y2hhbmdlZAo=", "encoding": "base64"}},
    ]
    resp = get_session().post(
        f"{hub_server.url}/api/models/{REPO}/commit/main",
        content=b"".join(json.dumps(line).encode() + b"\n" for line in payload),
        headers={"Authorization": f"Bearer {hub_server.token}", "Content-Type": "application/x-ndjson"},
    )
    assert resp.status_code == 200 and resp.json()["commitOid"] == third.oid
    assert hub_server.head(REPO) == third.oid


def test_failed_commit_keeps_previous_head(hub_server, tmp_path: Path) -> None:
    api = HfApi()
    api.create_repo(REPO)
    before = api.upload_file(path_or_fileobj=b"v1", path_in_repo="f.txt", repo_id=REPO, commit_message="v1").oid
    folder = _make_folder(tmp_path)
    hub_server.fail_next_commit = 500
    with pytest.raises(HfHubHTTPError) as err:
        api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="doomed")
    assert err.value.response.status_code == 500
    assert "Injected failure" in str(err.value)
    assert hub_server.fail_next_commit is None  # one-shot
    assert hub_server.head(REPO) == before
    assert _commit_ids(api, REPO)[0] == before
    assert "weights.bin" not in api.list_repo_files(REPO)
    # the next push goes through
    after = api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="retry").oid
    assert after != before and hub_server.head(REPO) == after


def test_parent_commit_mismatch_is_rejected(hub_server) -> None:
    api = HfApi()
    api.create_repo(REPO)
    old = hub_server.head(REPO)
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO, commit_message="x")
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(
            REPO,
            operations=[CommitOperationAdd("y.txt", b"y")],
            commit_message="stale",
            parent_commit=old,
        )
    assert err.value.response.status_code == 412


def test_missing_or_bad_token(hub_server, monkeypatch: pytest.MonkeyPatch) -> None:
    api = HfApi()
    api.create_repo(REPO)
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO, commit_message="x")
    api.upload_file(path_or_fileobj=b"y", path_in_repo="y.txt", repo_id=REPO, commit_message="y")
    monkeypatch.delenv("HF_TOKEN")
    # writes always need a token, as on the Hub
    with pytest.raises(HfHubHTTPError) as err:
        HfApi().create_repo("user/other")
    assert err.value.response.status_code == 401
    # anonymous reads of a public repo work unless the server requires a token
    assert Path(hf_hub_download(REPO, "x.txt")).read_bytes() == b"x"
    hub_server.require_token = True
    with pytest.raises(HfHubHTTPError) as err:
        HfApi().model_info(REPO)
    assert err.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as err:
        hf_hub_download(REPO, "y.txt")  # not cached: the 401 surfaces
    assert err.value.response.status_code == 401
    # an unknown token is a 401 too, with the Hub's message
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(token="hf_wrong").whoami()
    assert err.value.response.status_code == 401
    # the right token passes
    assert HfApi(token=hub_server.token).model_info(REPO).id == REPO


def test_private_repo_hidden_from_others(hub_server, monkeypatch: pytest.MonkeyPatch) -> None:
    api = HfApi()
    api.create_repo("user/secret", private=True)
    assert api.model_info("user/secret").private is True
    hub_server.add_user("other", "hf_other_token")
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token="hf_other_token").model_info("user/secret")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HfHubHTTPError) as err:
        HfApi().model_info("user/secret")
    assert err.value.response.status_code == 401


GOOD_CARD = """---
library_name: transformers
pipeline_tag: image-text-to-text
license: apache-2.0
tags:
- frozen
- custom_code
base_model: HuggingFaceTB/SmolLM2-135M-Instruct
datasets:
- shapes
model-index:
- name: frozen-tiny
  results:
  - task:
      type: image-text-to-text
      name: Open-ended few-shot
    dataset:
      name: Shapes open-ended miniImageNet analog
      type: shapes
    metrics:
    - type: accuracy
      value: 0.45
      name: 2-way 1-shot
---

# Frozen tiny
"""


BAD_METADATA = [
    ("pipeline_tag: not-a-task", "pipeline_tag"),
    ("library_name: [transformers]", "library_name"),
    ("tags: [1, 2]", "tags"),
    ("base_model: [1, 2]", "base_model"),
    ("datasets: {a: b}", "datasets"),
    ("model-index: {name: x}", "model-index"),
    ("model-index:\n- name: x\n  results:\n  - task: {type: t}\n    dataset: {name: d}\n    metrics: [{type: a, value: 1}]", "dataset"),
    ("model-index:\n- name: x\n  results:\n  - task: {name: t}\n    dataset: {name: d, type: d}\n    metrics: [{type: a, value: 1}]", "task"),
    ("model-index:\n- name: x\n  results:\n  - task: {type: t}\n    dataset: {name: d, type: d}\n    metrics: [{type: a}]", "value"),
    ("- just\n- a list", "mapping"),
    ("key: [unclosed", "YAML"),
]


def test_model_card_validate_accepts_good_card(hub_server) -> None:
    ModelCard(GOOD_CARD).validate()
    # a card without metadata is valid, with a warning (as on the Hub)
    with pytest.warns(UserWarning, match="empty or missing yaml metadata"):
        HfApi()._validate_yaml("# no metadata\n")


@pytest.mark.parametrize("bad_yaml, expected", BAD_METADATA[:5])
def test_model_card_validate_rejects_bad_card(hub_server, bad_yaml: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        ModelCard(f"---\n{bad_yaml}\n---\n\n# card\n").validate()


@pytest.mark.parametrize("bad_yaml, expected", BAD_METADATA)
def test_readme_validation_on_commit_path(hub_server, bad_yaml: str, expected: str) -> None:
    # `create_commit` sends the raw README (the client does not parse it first) and turns the
    # server's JSON `errors` into a ValueError
    with pytest.raises(ValueError, match=f"Invalid metadata in README.md(.|\n)*{expected}"):
        HfApi()._validate_yaml(f"---\n{bad_yaml}\n---\n\n# card\n")


def test_commit_with_invalid_card_fails_before_upload(hub_server) -> None:
    api = HfApi()
    api.create_repo(REPO)
    head = hub_server.head(REPO)
    n = len(hub_server.requests)
    with pytest.raises(ValueError, match="pipeline_tag"):
        api.upload_file(
            path_or_fileobj=b"---\npipeline_tag: nope\n---\n# x\n",
            path_in_repo="README.md",
            repo_id=REPO,
            commit_message="card",
        )
    assert hub_server.head(REPO) == head
    assert [p for _, p in hub_server.requests[n:]] == ["/api/validate-yaml"]
    api.upload_file(path_or_fileobj=GOOD_CARD.encode(), path_in_repo="README.md", repo_id=REPO, commit_message="card")
    card = ModelCard.load(REPO)
    assert card.data.pipeline_tag == "image-text-to-text"
    assert api.model_info(REPO).card_data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_seed_repo_any_namespace(hub_server) -> None:
    sha = hub_server.seed_repo("SomeOrg/base-lm", {"config.json": "{}", "model.safetensors": b"\x00" * 10})
    assert HfApi().model_info("SomeOrg/base-lm").sha == sha
    assert Path(hf_hub_download("SomeOrg/base-lm", "model.safetensors")).read_bytes() == b"\x00" * 10
    assert hub_server.repo("SomeOrg/base-lm").commits[sha].files["model.safetensors"].lfs


@pytest.fixture
def tiny_llama():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(config).eval()


def test_transformers_push_and_from_pretrained(hub_server, tiny_llama) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    tiny_llama.push_to_hub("user/tiny-llama")
    files = set(HfApi().list_repo_files("user/tiny-llama"))
    assert {"config.json", "model.safetensors", "README.md"} <= files
    assert hub_server.repo("user/tiny-llama").resolve("main").files["model.safetensors"].lfs

    ids = torch.tensor([[1, 5, 9, 3]])
    expected = tiny_llama(ids).logits
    loaded = AutoModelForCausalLM.from_pretrained("user/tiny-llama").eval()
    assert type(loaded).__name__ == "LlamaForCausalLM"
    torch.testing.assert_close(loaded(ids).logits, expected, rtol=0, atol=0)

    # a fresh process configured by env vars alone (the way later tests load pushed models)
    proc = hub_server.run_python(
        """
        import json, torch
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained("user/tiny-llama").eval()
        with torch.no_grad():
            print(json.dumps(model(torch.tensor([[1, 5, 9, 3]])).logits.flatten().tolist()))
        """,
        block_imports=("frozen_hf",),
        timeout=300,
    )
    got = torch.tensor(json.loads(proc.stdout.strip().splitlines()[-1]))
    torch.testing.assert_close(got, expected.detach().flatten(), rtol=0, atol=0)

    # pushing the very same model again creates no commit
    head = hub_server.head("user/tiny-llama")
    tiny_llama.push_to_hub("user/tiny-llama")
    assert hub_server.head("user/tiny-llama") == head
    assert hub_server.unhandled == []


def test_run_python_blocks_imports(hub_server) -> None:
    proc = hub_server.run_python(
        """
        import os
        try:
            import frozen_hf
        except ModuleNotFoundError:
            print("blocked", os.environ["HF_ENDPOINT"])
        """,
        block_imports=("frozen_hf",),
    )
    assert proc.stdout.strip() == f"blocked {hub_server.url}"
