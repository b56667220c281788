"""Training text from any `datasets` source, tokenized and packed into fixed-length blocks.

A source is one of:
- `prose`: the offline corpus built by `training.corpus` (Austen, Moby Dick, the World English Bible);
- `reviews`: the offline movie reviews built by `training.corpus` (their text only);
- a local `.txt` (one example per line, or per paragraph / whole file with `txt_sample_by`),
  `.csv`, `.json` or `.jsonl` file with a text column;
- a local folder holding `train.*` and optionally `validation.*` files of one of those formats;
- a Hugging Face Hub dataset name (`wikitext`, `roneneldan/TinyStories`, `imdb`, ...).

Several sources joined by commas (`prose,reviews`) are mixed: their train splits concatenated, and
their validation splits too.

Documents are packed as `<s> doc </s> <s> doc </s> ...` and cut into blocks of `block_size`
tokens, so no position is padding and every model sees where texts begin and end.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FORMATS = {".txt": "text", ".csv": "csv", ".json": "json", ".jsonl": "json"}
TXT_SAMPLE_BY = ("line", "paragraph", "document")
REVIEWS_DESCRIPTION = "the dlm offline movie reviews (Pang & Lee 2004/2005, Hutto & Gilbert 2014), text only"
PROSE_DESCRIPTION = ("the dlm offline prose corpus (Jane Austen's six novels, Moby Dick, the World English Bible; "
                     "public domain, from Debian packages)")


class DataError(ValueError):
    """A dataset that cannot be used, with the reason."""


@dataclass(frozen=True)
class TextSplits:
    train: object  # datasets.Dataset with a "text" column
    validation: object  # datasets.Dataset with a "text" column
    description: str  # where the text came from, for the model card


def load_texts(
    source: str,
    *,
    text_column: str = "text",
    txt_sample_by: str = "line",
    hub_config: str | None = None,
    validation_fraction: float = 0.1,
) -> TextSplits:
    """Load train and validation texts; blank rows are dropped. Errors name what was wrong."""
    import datasets

    if txt_sample_by not in TXT_SAMPLE_BY:
        raise DataError(f"unknown txt_sample_by {txt_sample_by!r}; choose from {list(TXT_SAMPLE_BY)}")
    options = dict(text_column=text_column, txt_sample_by=txt_sample_by, hub_config=hub_config,
                   validation_fraction=validation_fraction)
    if "," in source and not Path(source).expanduser().exists():
        parts = [part.strip() for part in source.split(",")]
        if any(not part for part in parts):
            raise DataError(f"empty source in {source!r}: join sources with single commas, e.g. prose,reviews")
        loaded = [load_texts(part, **options) for part in parts]
        text = datasets.Features({"text": datasets.Value("string")})  # csv gives string, text large_string

        def mixed(splits):
            return datasets.concatenate_datasets([split.cast(text) for split in splits])

        return TextSplits(mixed([x.train for x in loaded]), mixed([x.validation for x in loaded]),
                          " + ".join(x.description for x in loaded))
    description = None
    if source == "prose":
        from training.corpus import build_prose_corpus

        source = str(build_prose_corpus())
        description = PROSE_DESCRIPTION
    elif source == "reviews":
        from training.corpus import build_reviews

        source, text_column = str(build_reviews()), "text"
        description = REVIEWS_DESCRIPTION
    path = Path(source).expanduser()
    if path.is_file() or path.is_dir():
        splits = _load_local(path, txt_sample_by)
        description = description or f"local files {path.name}"
    elif path.suffix in FORMATS or "/" in source and path.parent.exists():
        raise DataError(f"dataset file {source!r} does not exist")
    else:
        try:
            splits = datasets.load_dataset(source, hub_config)
        except Exception as error:  # datasets raises many types (ConnectionError, DatasetNotFoundError, ...)
            raise DataError(f"cannot load dataset {source!r}: not a local file or folder, and the Hub said: {error}") from error
        description = f"Hugging Face dataset {source}" + (f" ({hub_config})" if hub_config else "")
    if "train" not in splits:
        raise DataError(f"dataset {source!r} has no 'train' split; it has {sorted(splits)}")
    train = _text_only(splits["train"], text_column, source)
    validation_name = next((s for s in ("validation", "valid", "test") if s in splits), None)
    if validation_name:
        validation = _text_only(splits[validation_name], text_column, source)
    else:  # hold out by the project's split rule, so the same text is always on the same side
        from training.corpus import split_of

        held_out = train.map(lambda row: {"_held": split_of(row["text"]) != "train"})
        train = held_out.filter(lambda row: not row["_held"]).remove_columns("_held")
        validation = held_out.filter(lambda row: row["_held"]).remove_columns("_held")
        if len(validation) == 0:
            raise DataError(f"dataset {source!r} is too small to hold out a validation set")
    return TextSplits(train, validation, description)


def _load_local(path: Path, txt_sample_by: str):
    import datasets

    if path.is_file():
        files = {"train": [str(path)]}
        suffix = path.suffix.lower()
    else:
        files, suffix = {}, None
        for split in ("train", "validation", "test"):
            found = sorted(p for p in path.glob(f"{split}.*") if p.suffix.lower() in FORMATS)
            if found:
                files[split] = [str(p) for p in found]
                suffix = found[0].suffix.lower()
        if "train" not in files:
            raise DataError(f"folder {str(path)!r} has no train.txt / train.csv / train.jsonl")
    if suffix not in FORMATS:
        raise DataError(f"unsupported file type {suffix!r}; use one of {sorted(FORMATS)}")
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"dataset file {str(path)!r} is empty")
    builder = FORMATS[suffix]
    options = {"sample_by": txt_sample_by} if builder == "text" else {}
    try:
        return datasets.load_dataset(builder, data_files=files, **options)
    except (ValueError, datasets.exceptions.DatasetGenerationError) as error:
        raise DataError(f"cannot read {str(path)!r}: {error}") from error


def _text_only(split, text_column: str, source: str):
    if text_column not in split.column_names:
        raise DataError(f"dataset {source!r} has no column {text_column!r}; its columns are {split.column_names}")
    split = split.select_columns([text_column])
    if text_column != "text":
        split = split.rename_column(text_column, "text")
    split = split.filter(lambda row: isinstance(row["text"], str) and row["text"].strip() != "")
    if len(split) == 0:
        raise DataError(f"dataset {source!r} has no non-empty text in column {text_column!r}")
    return split


def pack(texts, tokenizer, block_size: int, num_proc: int | None = None):
    """Tokenize and pack into (N, block_size) blocks: `<s> doc </s> <s> doc </s> ...`, remainder dropped."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if bos is None or eos is None:
        raise DataError("the tokenizer needs BOS and EOS tokens to pack documents")

    def tokenize_and_pack(batch):
        stream: list[int] = []
        for ids in tokenizer(batch["text"], add_special_tokens=False)["input_ids"]:
            stream += [bos, *ids, eos]
        usable = len(stream) // block_size * block_size
        return {"input_ids": [stream[i : i + block_size] for i in range(0, usable, block_size)]}

    blocks = texts.map(tokenize_and_pack, batched=True, batch_size=2000, remove_columns=texts.column_names,
                       num_proc=num_proc, desc="packing")
    if len(blocks) == 0:
        raise DataError(f"not enough text for a single block of {block_size} tokens")
    return blocks
