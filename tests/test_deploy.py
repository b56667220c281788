"""spaces/deploy.py against the stand-in Hub (tests/hubserver.py), and the Space's own files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.hubserver import hub_network, hub_online, hub_server  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[1]
SPACE = "test-user/dlm-demo"


@pytest.fixture(scope="module")
def deploy():
    spec = importlib.util.spec_from_file_location("dlm_space_deploy", ROOT / "spaces" / "deploy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def front_matter(text: str) -> dict:
    import yaml

    assert text.startswith("---\n")
    return yaml.safe_load(text[4 : text.index("\n---\n", 4)])


def test_spaces_is_never_a_python_package():
    assert not (ROOT / "spaces" / "__init__.py").exists()


def test_space_readme_front_matter_matches_the_tested_gradio():
    import gradio

    meta = front_matter((ROOT / "spaces" / "README.md").read_text(encoding="utf-8"))
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == gradio.__version__
    assert meta["app_file"] == "app.py" and meta["python_version"] == "3.11"
    assert meta["suggested_hardware"] == "cpu-basic" and "models" in meta


def test_deploy_uploads_the_app_and_sets_the_variables(deploy, hub_server, hub_network):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_server.url, token=hub_server.token)
    api.create_repo(SPACE, repo_type="space", space_sdk="gradio")
    api.upload_file(path_or_fileobj=b"stale", path_in_repo="dlm/removed_module.py", repo_id=SPACE, repo_type="space")
    uploaded = deploy.deploy(api, SPACE, "test-user/dlm-small", ar_model="test-user/dlm-small-ar", private=True,
                             continuous_model="test-user/dlm-continuous")

    files = hub_server.files(SPACE, repo_type="space")
    assert files["app.py"] == (ROOT / "app.py").read_bytes()
    assert files["requirements.txt"] == (ROOT / "spaces" / "requirements.txt").read_bytes()
    local_dlm = {p.relative_to(ROOT).as_posix() for package in ("dlm", "webapp") for p in (ROOT / package).rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    assert local_dlm <= set(files) and "dlm/render/static/player.js" in files and "webapp/tabs/generate.py" in files
    assert "dlm/removed_module.py" not in files  # stale package files are deleted
    assert not [name for name in files if "__pycache__" in name or name.startswith(("spaces/", "tests/", "training/"))]
    assert sorted(uploaded) == sorted(name for name in files if name != ".gitattributes")

    meta = front_matter(files["README.md"].decode("utf-8"))
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    assert meta["models"] == ["test-user/dlm-small", "test-user/dlm-small-ar", "test-user/dlm-continuous"]
    assert hub_server.space_variables(SPACE) == {"DLM_MODEL": "test-user/dlm-small",
                                                 "DLM_AR_MODEL": "test-user/dlm-small-ar",
                                                 "DLM_CONTINUOUS_MODEL": "test-user/dlm-continuous"}


def test_command_line_deploys_with_the_default_endpoint(deploy, hub_online, capsys):
    assert deploy.main(["test-user/private-demo", "--model", "test-user/dlm-small", "--classifier",
                        "test-user/dlm-clf", "--private"]) == 0
    assert hub_online.is_private("test-user/private-demo", repo_type="space")
    assert hub_online.space_variables("test-user/private-demo") == {"DLM_MODEL": "test-user/dlm-small",
                                                                     "DLM_CLASSIFIER": "test-user/dlm-clf"}
    assert "uploaded" in capsys.readouterr().out


def test_a_local_folder_is_refused_with_a_reason(deploy, tmp_path, capsys):
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert deploy.main(["test-user/demo", "--model", str(folder), "--dry-run"]) == 2
    assert "is a local folder; a Space needs a Hub repo id" in capsys.readouterr().err


def test_dry_run_sends_nothing(deploy, capsys):
    assert deploy.main(["test-user/demo", "--model", "test-user/dlm-small", "--dry-run"]) == 0  # offline: no request
    assert "would upload" in capsys.readouterr().out
