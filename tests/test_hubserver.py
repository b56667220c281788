"""The stand-in Hub (tests/hubserver.py) against the real huggingface_hub and transformers clients."""

from __future__ import annotations

import pytest

from tests.hubserver import hub_network, hub_online, hub_server, loopback_network  # noqa: F401  (fixtures)

REPO = "test-user/tiny-bert"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A tiny BertForMaskedLM saved with safetensors: (folder, model)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32)
    model = BertForMaskedLM(config).eval()
    folder = tmp_path_factory.mktemp("tiny-bert")
    model.save_pretrained(folder, safe_serialization=True)
    assert (folder / "model.safetensors").is_file()
    return folder, model


def _api(server, token=None):
    from huggingface_hub import HfApi

    return HfApi(endpoint=server.url, token=server.token if token is None else token)


def _same_weights(a, b) -> bool:
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_network_is_lifted_only_inside_the_fixture(hub_server):
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import OfflineModeIsEnabled

    offline_before = constants.HF_HUB_OFFLINE
    with loopback_network():
        assert HfApi(endpoint=hub_server.url, token=hub_server.token).whoami()["name"] == hub_server.user
        with pytest.raises(OfflineModeIsEnabled):  # anything but 127.0.0.1 is refused at once
            HfApi(endpoint="https://huggingface.co", token=False).model_info("openai-community/gpt2")
    assert constants.HF_HUB_OFFLINE == offline_before
    assert hub_server.requests["whoami"] == 1
    if offline_before:  # the test environment sets HF_HUB_OFFLINE=1
        with pytest.raises(OfflineModeIsEnabled):
            HfApi(endpoint=hub_server.url, token=hub_server.token).whoami()
        assert hub_server.requests["whoami"] == 1


def test_upload_folder_then_from_pretrained(hub_online, tiny_bert):
    from huggingface_hub import HfApi
    from transformers import AutoModelForMaskedLM

    folder, model = tiny_bert
    api = _api(hub_online)
    assert api.create_repo(REPO, exist_ok=True, private=False).repo_id == REPO
    assert api.create_repo(REPO, exist_ok=True).repo_id == REPO  # 409 swallowed by exist_ok
    info = api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="tiny bert")
    assert len(info.oid) == 40
    assert set(api.list_repo_files(REPO)) == {".gitattributes", "config.json", "model.safetensors"}
    assert api.model_info(REPO).sha == info.oid
    assert HfApi().model_info(REPO).sha == info.oid  # default endpoint points at the stand-in too
    assert api.file_exists(REPO, "model.safetensors") and not api.file_exists(REPO, "pytorch_model.bin")
    assert [title for _, title in hub_online.commits(REPO)] == ["tiny bert", "initial commit"]

    loaded = AutoModelForMaskedLM.from_pretrained(REPO)  # no endpoint: goes through the patched defaults
    assert type(loaded).__name__ == "BertForMaskedLM"
    assert _same_weights(loaded, model)
    assert hub_online.requests["resolve_get"] >= 2  # config.json and model.safetensors came over HTTP


def test_downloads_with_explicit_endpoint(hub_server, hub_network, tmp_path):
    from huggingface_hub import hf_hub_download, snapshot_download

    api = _api(hub_server)
    api.create_repo("test-user/files")
    first = api.upload_file(path_or_fileobj=b"one", path_in_repo="data/a.txt", repo_id="test-user/files")
    second = api.upload_file(path_or_fileobj=b"two", path_in_repo="data/a.txt", repo_id="test-user/files")
    assert first.oid != second.oid

    path = hf_hub_download("test-user/files", "data/a.txt", endpoint=hub_server.url, cache_dir=tmp_path)
    assert open(path, "rb").read() == b"two"
    old = hf_hub_download("test-user/files", "data/a.txt", revision=first.oid, endpoint=hub_server.url,
                          cache_dir=tmp_path)
    assert open(old, "rb").read() == b"one"
    snap = snapshot_download("test-user/files", endpoint=hub_server.url, cache_dir=tmp_path / "snap")
    assert open(f"{snap}/data/a.txt", "rb").read() == b"two"
    assert api.repo_info("test-user/files").sha == second.oid
    assert hub_server.files("test-user/files", revision=first.oid)["data/a.txt"] == b"one"


def test_private_repo_needs_the_token(hub_online, tiny_bert):
    from huggingface_hub.errors import RepositoryNotFoundError
    from transformers import AutoModelForMaskedLM

    folder, model = tiny_bert
    api = _api(hub_online)
    api.create_repo("test-user/secret-bert", private=True)
    api.upload_folder(repo_id="test-user/secret-bert", folder_path=folder)
    assert hub_online.is_private("test-user/secret-bert")
    assert api.model_info("test-user/secret-bert").private is True

    anonymous = _api(hub_online, token=False)
    with pytest.raises(RepositoryNotFoundError):
        anonymous.model_info("test-user/secret-bert")
    with pytest.raises(OSError):
        AutoModelForMaskedLM.from_pretrained("test-user/secret-bert", token=False)
    loaded = AutoModelForMaskedLM.from_pretrained("test-user/secret-bert", token=hub_online.token)
    assert _same_weights(loaded, model)


def test_writes_need_a_valid_token(hub_server, hub_network):
    from huggingface_hub.errors import HfHubHTTPError

    for token in (False, "wrong"):
        with pytest.raises(HfHubHTTPError) as err:
            _api(hub_server, token=token).create_repo("test-user/nope")
        assert err.value.response.status_code == 401
    assert hub_server.auth_failures["create_repo"] == 2
    assert not hub_server.repo_exists("test-user/nope")


def test_space_with_variable_and_secret(hub_server, hub_network):
    api = _api(hub_server)
    url = api.create_repo("test-user/demo", repo_type="space", space_sdk="gradio", exist_ok=True)
    assert url.repo_type == "space"
    api.upload_file(path_or_fileobj=b"---\nsdk: gradio\napp_file: app.py\n---\n", path_in_repo="README.md",
                    repo_id="test-user/demo", repo_type="space")
    api.upload_file(path_or_fileobj=b"print('hi')\n", path_in_repo="app.py", repo_id="test-user/demo",
                    repo_type="space")
    api.add_space_variable("test-user/demo", "DLM_MODEL", "test-user/tiny-bert")
    api.add_space_secret("test-user/demo", "HF_TOKEN", "s3cret")

    assert hub_server.space_variables("test-user/demo") == {"DLM_MODEL": "test-user/tiny-bert"}
    assert hub_server.space_secrets("test-user/demo") == {"HF_TOKEN": "s3cret"}
    assert api.get_space_variables("test-user/demo")["DLM_MODEL"].value == "test-user/tiny-bert"
    assert set(api.get_space_secrets("test-user/demo")) == {"HF_TOKEN"}
    info = api.space_info("test-user/demo")
    assert info.sdk == "gradio" and info.runtime.stage == "RUNNING"
    assert set(api.list_repo_files("test-user/demo", repo_type="space")) == {".gitattributes", "README.md", "app.py"}
    assert hub_server.requests["validate_yaml"] == 1  # README.md commits are validated first


def test_injected_commit_failure(hub_server, hub_network, tmp_path):
    from huggingface_hub.errors import HfHubHTTPError

    api = _api(hub_server)
    api.create_repo("test-user/flaky")
    hub_server.fail_next_commits(1)
    with pytest.raises(HfHubHTTPError) as err:  # create_commit / upload_file do not retry
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="test-user/flaky")
    assert err.value.response.status_code == 500
    assert hub_server.requests["commit"] == 1
    assert "x.txt" not in hub_server.files("test-user/flaky")

    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="test-user/flaky")
    assert hub_server.files("test-user/flaky")["x.txt"] == b"x"
    assert hub_server.requests["commit"] == 2


def test_upload_folder_retries_a_failed_commit(hub_server, hub_network, tmp_path):
    """With hf_xet installed, upload_folder posts its commit with backoff (1 s after a 500), absorbing one failure."""
    from huggingface_hub.utils._runtime import is_xet_available

    if not is_xet_available():
        pytest.skip("without hf_xet, upload_folder goes through create_commit, which does not retry")
    (tmp_path / "a.txt").write_text("a")
    api = _api(hub_server)
    api.create_repo("test-user/retry")
    hub_server.fail_next_commits(1)
    api.upload_folder(repo_id="test-user/retry", folder_path=tmp_path)
    assert hub_server.requests["commit"] == 2
    assert hub_server.files("test-user/retry")["a.txt"] == b"a"


def test_transformers_push_to_hub(hub_online, tiny_bert):
    from transformers import AutoModelForMaskedLM

    _, model = tiny_bert
    model.push_to_hub("test-user/pushed", create_pr=False)  # implicit HF_TOKEN and endpoint from hub_online
    assert {"config.json", "model.safetensors", "README.md"} <= set(hub_online.files("test-user/pushed"))
    assert _same_weights(AutoModelForMaskedLM.from_pretrained("test-user/pushed"), model)

    pr = _api(hub_online).upload_file(path_or_fileobj=b"note", path_in_repo="NOTE.md", repo_id="test-user/pushed",
                                      create_pr=True)
    assert pr.pr_revision == "refs/pr/1"
    assert "NOTE.md" in hub_online.files("test-user/pushed", revision="refs/pr/1")
    assert "NOTE.md" not in hub_online.files("test-user/pushed")
