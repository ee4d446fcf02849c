"""The registry of datasets: for each source, its original files (name, size, SHA-256, official URLs),
how to parse them, and how many digits each official split must hold; and the local sources (contributed
drawings), which grow in a folder of their own and have no published files, splits or counts.

Adding a source means adding one `Source` (or `LocalSource`) to `SOURCES`; `params.yaml`
(`ingest.sources`) picks the mix.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from digitops.data import bhmsds
from digitops.data.drawings import read_named_drawings
from digitops.data.idx import read_idx_digits
from digitops.data.optdigits import read_optdigits
from digitops.data.usps import read_usps

# split name -> (images (N, H, W) uint8 white ink on black, labels (N,) int64)
SplitArrays = dict[str, tuple[np.ndarray, np.ndarray]]
# The one "split" of a source without an official test split: its parser returns every digit under this
# name, its expected counts give the total, and ingest splits it by content hash.
WHOLE = "all"


@dataclass(frozen=True)
class Archive:
    """An archive that holds some of a source's files (EMNIST comes only inside NIST's gzip.zip)."""

    name: str  # file name in the download cache
    urls: tuple[str, ...]  # none when no one publishes the archive: its members are downloaded one by one
    approx_bytes: int  # for the progress bar and the user's patience; the members carry the checksums
    # Many small members (bhmsds): verify them inside the archive and let the parser read them from it,
    # instead of extracting thousands of files; the fetch step then gives the archive as their path.
    read_in_place: bool = False


@dataclass(frozen=True)
class RemoteFile:
    """One original file, as published."""

    name: str
    size: int  # bytes
    sha256: str
    urls: tuple[str, ...] = ()  # direct downloads, tried in order
    archive: Archive | None = None  # or: a member of this archive...
    member: str = ""  # ...at this path inside it


@dataclass(frozen=True)
class Source:
    """A dataset of handwritten digits."""

    name: str
    description: str
    files: Sequence[RemoteFile]
    parse: Callable[[Mapping[str, Path]], SplitArrays]  # file name -> local path  =>  split -> arrays
    expected_counts: Mapping[str, int]  # official split (or WHOLE) -> number of digits
    mnist_format: bool  # already 28x28 MNIST-style; otherwise every image goes through the normaliser
    citation: str = ""
    license: str = ""
    opt_in: bool = False  # large download: not in the default mix
    # No official test split: `parse` returns the whole set under WHOLE, and ingest sends the share
    # `ingest.hash_test_fraction` of it to test by the content hash of each normalised digit.
    hash_split: bool = False
    contributed: bool = False  # a published data set: its test split is one the promotion gate may compare


@dataclass(frozen=True)
class LocalSource:
    """Digits kept in a local folder that grows (contributed drawings).

    Nothing is downloaded or checked against a published SHA-256, and there are no official splits or
    counts: ingest normalises every image and assigns it to train or test by its content hash
    (`digitops.data.ingest.ingest_local_source`). The folder is `base.paths.feedback` in params.yaml.
    """

    name: str
    description: str
    # folder -> images as stored, labels (N,), and a name per image (N,) that reports can cite
    read: Callable[[Path], tuple[list[Image.Image], np.ndarray, list[str]]]
    opt_in: bool = False  # nothing to download; listed in ingest.sources to be used
    # Whoever may contribute chooses these digits, and a content hash that anyone can compute picks their
    # split: they are evaluated in a section of their own and never count in what the promotion gate
    # compares (a contributor must not be able to manufacture its gain or a regression), and
    # `train.source_mix` must cap their share of an epoch.
    contributed: bool = False


def _mnist_urls(name: str) -> tuple[str, ...]:
    return (
        f"https://yann.lecun.com/exdb/mnist/{name}",
        f"https://storage.googleapis.com/cvdf-datasets/mnist/{name}",  # the mirror TF/Keras use
    )


def _parse_idx_source(prefix: str, transposed: bool) -> Callable[[Mapping[str, Path]], SplitArrays]:
    def parse(paths: Mapping[str, Path]) -> SplitArrays:
        return {
            split: read_idx_digits(
                paths[f"{prefix}{stem}-images-idx3-ubyte.gz"],
                paths[f"{prefix}{stem}-labels-idx1-ubyte.gz"],
                transposed=transposed,
            )
            for split, stem in (("train", "train"), ("test", "t10k" if prefix == "" else "test"))
        }

    return parse


def _parse_usps(paths: Mapping[str, Path]) -> SplitArrays:
    return {"train": read_usps(paths["zip.train.gz"]), "test": read_usps(paths["zip.test.gz"])}


MNIST = Source(
    name="mnist",
    description="MNIST: 70,000 handwritten digits from NIST SD-1 and SD-3, 28x28, white on black",
    files=(
        RemoteFile(
            "train-images-idx3-ubyte.gz",
            9912422,
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            _mnist_urls("train-images-idx3-ubyte.gz"),
        ),
        RemoteFile(
            "train-labels-idx1-ubyte.gz",
            28881,
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            _mnist_urls("train-labels-idx1-ubyte.gz"),
        ),
        RemoteFile(
            "t10k-images-idx3-ubyte.gz",
            1648877,
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            _mnist_urls("t10k-images-idx3-ubyte.gz"),
        ),
        RemoteFile(
            "t10k-labels-idx1-ubyte.gz",
            4542,
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            _mnist_urls("t10k-labels-idx1-ubyte.gz"),
        ),
    ),
    parse=_parse_idx_source("", transposed=False),
    expected_counts={"train": 60000, "test": 10000},
    mnist_format=True,
    citation="Y. LeCun, L. Bottou, Y. Bengio, P. Haffner. Gradient-based learning applied to document "
    "recognition. Proc. IEEE 86(11), 1998.",
    license="CC BY-SA 3.0 (Y. LeCun and C. Cortes)",
)

_EMNIST_ARCHIVE = Archive(
    name="gzip.zip",
    urls=("https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip",),
    approx_bytes=561_753_746,
)

EMNIST_DIGITS = Source(
    name="emnist-digits",
    description=(
        "EMNIST 'digits': 280,000 digits from NIST SD-19, stored transposed; re-normalised to MNIST style"
    ),
    files=tuple(
        RemoteFile(name, size, sha256, archive=_EMNIST_ARCHIVE, member=f"gzip/{name}")
        for name, size, sha256 in (
            (
                "emnist-digits-train-images-idx3-ubyte.gz",
                59515779,
                "f7c95004d14d81af89522e67d8f0c781dfb3bd544181c81bfe1eb6b41c35b726",
            ),
            (
                "emnist-digits-train-labels-idx1-ubyte.gz",
                113859,
                "6638a6ff5fe2eefd9cca2471995b46c82986b8e4b2a70d2f5ce8e05d7edb319e",
            ),
            (
                "emnist-digits-test-images-idx3-ubyte.gz",
                9908519,
                "20ebe43509264f7639d37c835a3f0b009e90b29e00a099a03101abe1644a3f63",
            ),
            (
                "emnist-digits-test-labels-idx1-ubyte.gz",
                19960,
                "bad1834c45d5988e270b99d43b13edc3fd898f658ffbc2caf2846ef27f7b05b0",
            ),
        )
    ),
    parse=_parse_idx_source("emnist-digits-", transposed=True),
    expected_counts={"train": 240000, "test": 40000},
    mnist_format=False,  # EMNIST frames the digit in 24x24 with 2-px padding, not MNIST's 20x20 by mass
    citation="G. Cohen, S. Afshar, J. Tapson, A. van Schaik. EMNIST: an extension of MNIST to handwritten "
    "letters. arXiv:1702.05373, 2017.",
    license="NIST Special Database 19 terms (public domain in the US)",
    opt_in=True,  # NIST's gzip.zip is about 536 MB; fetch keeps only the four digits files
)

USPS = Source(
    name="usps",
    description="USPS: 9,298 digits scanned from envelopes, 16x16, as distributed with 'The Elements of "
    "Statistical Learning'; normalised to MNIST style",
    files=(
        RemoteFile(
            "zip.train.gz",
            1829071,
            "66ebf231ab51f2cf6ac1a892d0f98ccffee1079d7a5db638c1f11f366046ca16",
            ("https://hastie.su.domains/ElemStatLearn/datasets/zip.train.gz",),
        ),
        RemoteFile(
            "zip.test.gz",
            439208,
            "8dacc3c6e136af6c3488de9e5113a7daf140c8c2f1f0b61c54ee02f03f1a962f",
            ("https://hastie.su.domains/ElemStatLearn/datasets/zip.test.gz",),
        ),
    ),
    parse=_parse_usps,
    expected_counts={"train": 7291, "test": 2007},
    mnist_format=False,
    citation="J. J. Hull. A database for handwritten text recognition research. IEEE TPAMI 16(5), 1994.",
    license="no explicit license; distributed for research and teaching",
)

_BHMSDS_ARCHIVE = Archive(
    name="bhmsds.tar",  # `git archive` of the digit images at the pinned commit (SOURCE.md); not published
    urls=(),
    approx_bytes=15_370_240,
    read_in_place=True,
)


class LazyFiles(Sequence[RemoteFile]):
    """A long list of files, built on first use: thousands of records need not load with every import."""

    def __init__(self, build: Callable[[], tuple[RemoteFile, ...]]) -> None:
        self._build = functools.cache(build)

    def __getitem__(self, index):
        return self._build()[index]

    def __len__(self) -> int:
        return len(self._build())


def _bhmsds_files() -> tuple[RemoteFile, ...]:
    return tuple(
        RemoteFile(path, size, sha256, (bhmsds.download_url(path),), archive=_BHMSDS_ARCHIVE, member=path)
        for path, size, sha256 in bhmsds.member_records()
    )


def _parse_bhmsds(paths: Mapping[str, Path]) -> SplitArrays:
    return {WHOLE: bhmsds.read_bhmsds(paths)}


BHMSDS = Source(
    name="bhmsds",
    description="BHMSDS digits: 15,000 pen digits photographed on paper by a couple of writers (flagged 1s, "
    "crossed 7s), 28x28 dark on light grey; inverted and normalised to MNIST style",
    files=LazyFiles(_bhmsds_files),  # 15,000 members
    parse=_parse_bhmsds,
    expected_counts={WHOLE: 15000},
    mnist_format=False,
    citation="W. Błachowski. Basic Handwritten Math Symbols Dataset. https://github.com/wblachowski/bhmsds "
    f"(2019), commit {bhmsds.COMMIT}.",
    license="MIT (Copyright (c) 2019 wblachowski)",
    hash_split=True,
)


def _parse_optdigits(paths: Mapping[str, Path]) -> SplitArrays:
    return {
        "train": read_optdigits(paths["optdigits-orig.tra"]),
        "test": read_optdigits(paths["optdigits-orig.windep"]),  # the 13 writers not in .tra
    }


OPTDIGITS_ORIG = Source(
    name="optdigits-orig",
    description="UCI optdigits-orig: 3,731 digits from 43 writers in Turkey, 32x32 binary bitmaps stretched "
    "to fill the box; test is writer-independent; normalised to MNIST style",
    files=(
        RemoteFile(  # UCI's file, copied byte for byte into a GitHub repository (SOURCE.md)
            "optdigits-orig.tra",
            2048418,
            "b0649058daf39b41da11827b6f9d784333e85e7362539fe7afd26fef517b4a3f",
            (
                "https://raw.githubusercontent.com/rosalin00/assignment3/"
                "b0b56ab95905d4b3c414617e489fd0be6d0e055a/optdigits-orig.tra",
            ),
        ),
        RemoteFile(  # the same, with an extra last line "EOF" that the parser skips
            "optdigits-orig.windep",
            1903353,
            "c09ab8735d588fdf980724f10a5072c0b757037dc80b448b2f6a10392751c9d6",
            (
                "https://raw.githubusercontent.com/sukeshsangam/pattern-recognition-neural-networks/"
                "3b06ae726302dfcf384c1eec5ac6f2b71ae7ff53/optdigits-orig.windep",
            ),
        ),
    ),
    parse=_parse_optdigits,
    expected_counts={"train": 1934, "test": 1797},
    mnist_format=False,
    citation="E. Alpaydin, C. Kaynak. Optical Recognition of Handwritten Digits [Dataset]. UCI Machine "
    "Learning Repository, 1998. https://doi.org/10.24432/C50P49",
    license="CC BY 4.0, as UCI marks its datasets (the 1998 files carry no licence text)",
)

DRAWINGS = LocalSource(
    name="drawings",
    description="Drawings contributed through the service (POST /feedback) with their true labels: "
    "canvas or uploaded images of any size, normalised to MNIST style",
    read=read_named_drawings,
    contributed=True,
)

SOURCES: dict[str, Source | LocalSource] = {
    source.name: source for source in (MNIST, EMNIST_DIGITS, USPS, BHMSDS, OPTDIGITS_ORIG, DRAWINGS)
}


def expected_counts(source: Source | LocalSource, max_per_split: int | None) -> dict[str, int] | None:
    """How many digits each official split of `source` holds after ingest's cap; None for a local source,
    whose size is open (the data contract then checks neither counts nor class shares).

    A source split by content hash has one count, of the whole set (under WHOLE). Its train and test
    sizes follow from the hashes, so once capped per split its total is not known in advance: no count.
    """
    if isinstance(source, LocalSource):
        return None
    if source.hash_split and max_per_split is not None:
        return {}
    return {
        split: count if max_per_split is None else min(count, max_per_split)
        for split, count in source.expected_counts.items()
    }


def contributed_sources(names: Iterable[str]) -> tuple[str, ...]:
    """Those of `names` (registry sources) whose digits are contributed (`.contributed`), in order."""
    return tuple(name for name in dict.fromkeys(names) if get_source(name).contributed)


def get_source(name: str) -> Source | LocalSource:
    """The registered source called `name`; an unknown name lists the known ones."""
    try:
        return SOURCES[name]
    except KeyError:
        raise KeyError(f"unknown data source {name!r}; known sources: {', '.join(sorted(SOURCES))}") from None
