"""Regenerate the parity fixtures from the ORIGINAL modeling code of LLaDA and Dream.

    python tests/data/remote/make_fixtures.py            # rewrite tests/data/{llada,dream}_parity.safetensors
    python tests/data/remote/make_fixtures.py --check    # recompute and compare with the stored fixtures

For each family it writes the tiny checkpoint of tests/data/remote/layouts.py (the published tensor names
and config keys, toy sizes, deterministic weights), builds the original model class from the copy of the
remote code in tests/data/remote/<family>/ (imported here as a plain package, never through
transformers' remote-code loader), loads the checkpoint's tensors into it strictly (every name must
match the original module tree), and stores the fp32 logits of one forward pass over `layouts.parity_ids`:

    input_ids  (2, 12) int64     the canvas fed
    logits     (2, 12, V) fp32   the original model's output (Dream: unshifted, as DreamModel returns it;
                                 its sampler shifts it by one, as dlm.shifted.canvas_logits does)

tests/test_checkpoints.py loads the same tiny checkpoint with `dlm.load(folder)` (no remote code) and
asserts its logits equal these. Only this script imports the original code.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # the repository root, for `tests.data.remote.layouts`

from tests.data.remote import layouts


def import_original(family: str):
    """The folder tests/data/remote/<family> as a package `original_<family>` (its modules import each other
    relatively, as they do inside transformers_modules)."""
    name = f"original_{family}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / family / "__init__.py",
                                                  submodule_search_locations=[str(HERE / family)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return package


def strict_load(model: torch.nn.Module, folder: Path) -> None:
    """Load every safetensors shard of `folder` into `model`; the names must match exactly both ways."""
    from safetensors.torch import load_file

    state = {}
    for shard in sorted(folder.glob("*.safetensors")):
        state |= load_file(shard)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SystemExit(f"{folder.name}: the tiny checkpoint does not match the original module tree: "
                         f"missing {missing}, unexpected {unexpected}")
    loaded = model.state_dict()
    for name, tensor in state.items():  # nothing tied or re-initialised behind our back
        if not torch.equal(loaded[name], tensor):
            raise SystemExit(f"{folder.name}: {name} did not load as stored")


def llada_logits(folder: Path, ids: torch.Tensor) -> torch.Tensor:
    import_original("llada")
    from original_llada.configuration_llada import LLaDAConfig
    from original_llada.modeling_llada import LLaDAModelLM

    config = LLaDAConfig.from_pretrained(folder)  # the tiny config.json, read by the original config class
    model = LLaDAModelLM(config, init_params=False).float().eval()
    strict_load(model, folder)
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def dream_logits(folder: Path, ids: torch.Tensor) -> torch.Tensor:
    import_original("dream")
    from original_dream.configuration_dream import DreamConfig
    from original_dream.modeling_dream import DreamModel

    config = DreamConfig.from_pretrained(folder)
    model = DreamModel(config).float().eval()
    strict_load(model, folder)
    with torch.no_grad():
        # as DreamGenerationMixin._sample calls it with nothing padded: model(x, "full", None)
        return model(ids, "full", None).logits.float()


FAMILIES = {
    "llada": (layouts.write_llada, layouts.LLADA_CONFIG, llada_logits),
    "dream": (layouts.write_dream, layouts.DREAM_CONFIG, dream_logits),
}


def fixture_path(family: str) -> Path:
    return layouts.DATA / f"{family}_parity.safetensors"


def compute(family: str) -> dict[str, torch.Tensor]:
    write, config, run = FAMILIES[family]
    ids = layouts.parity_ids(config)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write(Path(tmp) / family, with_code=False)
        logits = run(folder, ids)
    return {"input_ids": ids, "logits": logits.contiguous()}


def provenance(family: str) -> dict[str, str]:
    import transformers

    files = sorted((HERE / family).glob("*.py"))
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]
    return {"family": family, "original_code_sha256": digest, "torch": torch.__version__,
            "transformers": transformers.__version__, "made_by": "tests/data/remote/make_fixtures.py"}


def main(argv: list[str] | None = None) -> int:
    from safetensors.torch import load_file, save_file

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the stored fixtures instead of writing")
    parser.add_argument("families", nargs="*", default=list(FAMILIES))
    args = parser.parse_args(argv)
    worst = 0.0
    for family in args.families:
        fresh = compute(family)
        path = fixture_path(family)
        if args.check:
            stored = load_file(path)
            assert torch.equal(stored["input_ids"], fresh["input_ids"]), f"{family}: the parity ids changed"
            delta = (stored["logits"] - fresh["logits"]).abs().max().item()
            worst = max(worst, delta)
            print(f"{family}: max |stored - recomputed logit| = {delta:.3g}")
        else:
            save_file(fresh, path, metadata=provenance(family))
            print(f"{family}: wrote {path} ({path.stat().st_size} bytes), logits {tuple(fresh['logits'].shape)}")
    return 1 if worst > 1e-5 else 0


if __name__ == "__main__":
    raise SystemExit(main())
