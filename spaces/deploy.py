"""Upload the app to a Hugging Face Space and point it at models on the Hub.

    python spaces/deploy.py your-name/dlm-demo --model your-name/dlm-small --ar-model your-name/dlm-small-ar
    python spaces/deploy.py your-name/dlm-demo --model your-name/dlm-small --private --dry-run

The Space repo gets `app.py`, the app's `webapp` package, the `dlm` package (with any models bundled
in `dlm/models` and the player's static files), `spaces/README.md` as its README (front matter: sdk, sdk_version, app_file,
python_version, suggested_hardware, and the `models` it loads), `spaces/requirements.txt` as its
requirements, and any benchmark results in `bench/results/*.json` (the Compare and Learn tabs read
them). The models are set as the Space variables DLM_MODEL, DLM_AR_MODEL, DLM_CONTINUOUS_MODEL and
DLM_CLASSIFIER.
Files under `dlm/` and `webapp/` that no longer exist here are deleted from the Space in the same commit.

Authentication: HF_TOKEN or `hf auth login`, as for any huggingface_hub call.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPACE_FILES = Path(__file__).resolve().parent
VARIABLES = {"model": "DLM_MODEL", "ar_model": "DLM_AR_MODEL", "classifier": "DLM_CLASSIFIER",
             "continuous_model": "DLM_CONTINUOUS_MODEL"}
SKIP = {"__pycache__", ".pytest_cache"}  # folder names never uploaded
SKIP_SUFFIXES = {".pyc", ".pyo"}
PACKAGES = ("dlm", "webapp")  # the library and the app's tabs: uploaded whole, stale files deleted


def package_files(root: Path = ROOT) -> dict[str, Path]:
    """Path in the Space repo -> local file, for everything the Space needs."""
    files = {"app.py": root / "app.py", "README.md": SPACE_FILES / "README.md",
             "requirements.txt": SPACE_FILES / "requirements.txt"}
    for path in sorted(p for package in PACKAGES for p in (root / package).rglob("*")):
        parts = path.relative_to(root).parts
        if path.is_file() and not SKIP.intersection(parts) and path.suffix not in SKIP_SUFFIXES:
            files["/".join(parts)] = path
    for path in sorted((root / "bench" / "results").glob("*.json")):
        files[f"bench/results/{path.name}"] = path
    return files


def space_readme(models: list[str]) -> str:
    """spaces/README.md with its front matter's `models` set to the Hub models the Space loads."""
    import yaml

    text = (SPACE_FILES / "README.md").read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        raise ValueError("spaces/README.md must start with YAML front matter")
    end = text.index("\n---\n", 4)
    meta = yaml.safe_load(text[4:end])
    meta["models"] = list(dict.fromkeys(models))  # unique, in order
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + text[end + 1 :]


def hub_ids(sources: list[str | None]) -> list[str]:
    """The sources that are Hub repo ids (not bundled names: those have no slash)."""
    return [s for s in sources if s and "/" in s and not Path(s).exists()]


def deploy(
    api,
    space_id: str,
    model: str,
    ar_model: str | None = None,
    classifier: str | None = None,
    private: bool = False,
    hardware: str | None = None,
    dry_run: bool = False,
    continuous_model: str | None = None,
) -> list[str]:
    """Create or update the Space; returns the paths uploaded (nothing is sent when dry_run)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    settings = {"model": model, "ar_model": ar_model, "classifier": classifier, "continuous_model": continuous_model}
    for name, value in settings.items():
        if value and Path(value).exists() and "/" in value:
            raise ValueError(f"--{name.replace('_', '-')} {value!r} is a local folder; a Space needs a Hub repo id "
                             "(push the model first) or a model bundled in dlm/models")
    files = package_files()
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"cannot deploy: missing {missing}")
    readme = space_readme(hub_ids([model, ar_model, classifier, continuous_model])).encode("utf-8")
    if dry_run:
        return sorted(files)
    api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True,
                    space_hardware=hardware)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=readme if name == "README.md" else str(path))
                  for name, path in files.items()]
    existing = api.list_repo_files(space_id, repo_type="space")
    operations += [CommitOperationDelete(path_in_repo=name) for name in existing
                   if name.startswith(tuple(f"{p}/" for p in PACKAGES)) and name not in files]
    api.create_commit(space_id, repo_type="space", operations=operations,
                      commit_message=f"Deploy the dlm app with {model}")
    for name, value in settings.items():
        if value:
            api.add_space_variable(space_id, VARIABLES[name], value)
    return sorted(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("space_id", help="owner/name of the Space (created if missing)")
    parser.add_argument("--model", required=True, help="diffusion model: Hub repo id (or a bundled name)")
    parser.add_argument("--ar-model", help="autoregressive model for Compare (default: the bundled default-ar)")
    parser.add_argument("--continuous-model", help="continuous (embedding-space) diffusion model for Generate and "
                        "Animate (default: the bundled default-continuous)")
    parser.add_argument("--classifier", help="trained classifier for the Classify tab: a Hub repo written by training.train_classifier (default: the bundled default-classifier)")
    parser.add_argument("--private", action="store_true", help="create the Space private")
    parser.add_argument("--hardware", help="request hardware, e.g. cpu-basic, zero-a10g, t4-small (default: the Hub's)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be uploaded; send nothing")
    args = parser.parse_args(argv)
    from huggingface_hub import HfApi

    try:
        uploaded = deploy(HfApi(), args.space_id, args.model, args.ar_model, args.classifier, args.private,
                          args.hardware, args.dry_run, args.continuous_model)
    except (ValueError, OSError) as error:  # includes huggingface_hub's HTTP errors
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(("would upload " if args.dry_run else "uploaded ") + f"{len(uploaded)} files to spaces/{args.space_id}")
    if not args.dry_run:
        print(f"https://huggingface.co/spaces/{args.space_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
