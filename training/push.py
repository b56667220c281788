"""Push a trained checkpoint folder to the Hugging Face Hub.

    python -m training.push runs/diffusion you/dlm-prose-diffusion [--private]

The token comes from `HF_TOKEN` or `hf auth login`. The folder's weights (safetensors only), tokenizer,
config (with the diffusion settings under "dlm", so `dlm.load(REPO_ID)` needs no flags) and model card
go up in one commit; training checkpoints and pickles stay behind. A failed upload is retried with
backoff and, if it still fails, reported as a failure, never as done.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# checkpoints, pickles, and the models of their own a run keeps beside its final one (`stable/` from --schedule
# wsd, `ema/` from --ema: push those folders themselves to publish them)
IGNORE = ["checkpoint-*", "checkpoint-*/**", "tokenizer/**", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl",
          "runs/**", ".write-test", "stable/**", "ema/**"]
RETRIES = 3  # upload attempts before giving up
BACKOFF_SECONDS = 2.0  # wait before the second attempt; doubles each time


class PushError(RuntimeError):
    """The checkpoint could not be pushed."""


def check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise PushError(f"checkpoint folder {str(folder)!r} does not exist")
    if not (folder / "config.json").is_file():
        raise PushError(f"{str(folder)!r} has no config.json: is it a saved model?")
    if not list(folder.glob("*.safetensors")):
        raise PushError(f"{str(folder)!r} has no .safetensors weights (pickled weights are never pushed)")
    if not (folder / "README.md").is_file():
        raise PushError(f"{str(folder)!r} has no README.md model card; the trainers write one")


def push(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None, api=None,
         retries: int = RETRIES, backoff: float = BACKOFF_SECONDS, commit_message: str | None = None) -> str:
    """Create the repo if needed, upload the folder, check every file arrived; returns the repo URL.

    `api` is an `HfApi` (tests pass one pointed at a stand-in server); by default one is made with `token`.
    """
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    folder = Path(folder)
    check_folder(folder)
    files = files_to_push(folder)
    api = api or HfApi(token=token)
    last_error: Exception | None = None
    for attempt in range(1, retries + 1):
        try:
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            # one commit of every file; create_commit does not retry on its own, so the retries here are all
            info = api.create_commit(repo_id=repo_id, operations=[CommitOperationAdd(name, folder / name) for name in files],
                                     commit_message=commit_message or f"Upload {folder.name} with dlm")
            _verify(api, repo_id, files, info.oid)
            return str(url)
        except OfflineModeIsEnabled as error:
            raise PushError(f"cannot push to {repo_id}: HF_HUB_OFFLINE is set") from error
        except (HfHubHTTPError, OSError, PushError) as error:  # OSError covers connection failures
            status = getattr(getattr(error, "response", None), "status_code", None)
            if status is not None and status < 500 and status != 429:  # auth, not found...: retrying won't help
                raise PushError(f"push to {repo_id} refused ({status}): {error}") from error
            last_error = error
            if attempt < retries:
                wait = backoff * 2 ** (attempt - 1)
                print(f"push attempt {attempt} failed ({error}); retrying in {wait:.0f} s", file=sys.stderr)
                time.sleep(wait)
    raise PushError(f"push of {str(folder)!r} to {repo_id} failed after {retries} attempts: {last_error}")


def files_to_push(folder: Path) -> list[str]:
    """Paths (relative, posix) of the files that go up: everything but checkpoints, pickles and the run's
    other models (`stable/`, `ema/`)."""
    from huggingface_hub.utils import filter_repo_objects

    local = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return list(filter_repo_objects(local, ignore_patterns=IGNORE))


def _verify(api, repo_id: str, files: list[str], revision: str) -> None:
    """Every file we meant to upload is in the pushed revision."""
    missing = set(files) - set(api.list_repo_files(repo_id, revision=revision))
    if missing:
        raise PushError(f"upload to {repo_id} is missing {sorted(missing)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.push", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint_dir", type=Path)
    parser.add_argument("repo_id")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN or the saved login)")
    args = parser.parse_args(argv)
    try:
        url = push(args.checkpoint_dir, args.repo_id, private=args.private, token=args.token)
    except PushError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"pushed {args.checkpoint_dir} to {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
