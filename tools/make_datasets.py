"""Make the bundled data files in tinytorch/datasets/ (a one-off; the files are committed).

    .venv/bin/python tools/make_datasets.py                 # both files
    .venv/bin/python tools/make_datasets.py --only digits   # or --only corpus

digits.npz
    scikit-learn's bundled copy of the UCI optical-recognition handwritten digits
    (`sklearn.datasets.load_digits`, read from inside the installed wheel: no download), stored
    as uint8 `images` (1797, 8, 8) in 0..16, uint8 `labels` (1797,) and uint8 `split` (1797,)
    with 0 = train, 1 = val, 2 = test from `tinytorch.datasets.stratified_split` (seed 0).
    The zip is written with fixed timestamps so the bytes are reproducible (for one zlib).

corpus.txt
    The Book of Genesis, King James Version (1611; public domain), taken from the Debian
    packages `bible-kjv-text` (the compressed text) and `bible-kjv` (the `bible` program that
    decompresses it). The .deb files are read from --deb-dir (default: apt's cache); get them
    with `apt-get download bible-kjv bible-kjv-text` if they are not there. They are unpacked
    with `dpkg-deb -x` into a temporary folder; nothing is installed. Verse numbers are
    dropped: one verse per line, a blank line between chapters.

scikit-learn is needed only here, never at run time. Prints the sha256 of each file written
(README.md in tinytorch/datasets/ records them and the tests check them).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "tinytorch" / "datasets"
GENESIS = "Gen1:1-Gen50:26"
GENESIS_CHAPTERS = 50
GENESIS_VERSES = 1533


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez_compressed, but with fixed zip timestamps so the bytes are reproducible."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def make_digits(out: Path) -> None:
    from sklearn.datasets import load_digits  # tools-only dependency

    sys.path.insert(0, str(ROOT))
    from tinytorch.datasets import _SPLIT_CODES, DIGITS_SPLIT_SIZES, stratified_split

    d = load_digits()
    images = d.images.astype(np.uint8)  # (1797, 8, 8)
    labels = d.target.astype(np.uint8)  # (1797,)
    # the conversion is exact: the pixels are the integers 0..16 and the labels 0..9
    assert np.array_equal(images, d.images) and np.array_equal(labels, d.target)
    assert images.shape == (1797, 8, 8) and images.max() == 16 and images.min() == 0
    assert np.array_equal(images.reshape(1797, 64), d.data)  # (1797, 64)

    parts = stratified_split(labels, DIGITS_SPLIT_SIZES, seed=0)
    split = np.full(len(labels), 255, dtype=np.uint8)
    for name, idx in parts.items():
        split[idx] = _SPLIT_CODES[name]
    assert (split != 255).all()
    write_npz(out, {"images": images, "labels": labels, "split": split})
    print(f"wrote {out.relative_to(ROOT)}: {len(labels)} images, split sizes "
          + ", ".join(f"{k}={len(v)}" for k, v in parts.items()))


def _find_deb(deb_dir: Path, pattern: str) -> Path:
    found = sorted(deb_dir.glob(pattern))
    if not found:
        sys.exit(
            f"no {pattern} in {deb_dir}; run `apt-get download bible-kjv bible-kjv-text` in a "
            "folder and pass it as --deb-dir"
        )
    return found[-1]


def genesis_text(deb_dir: Path) -> str:
    debs = [_find_deb(deb_dir, "bible-kjv-text_*.deb"), _find_deb(deb_dir, "bible-kjv_*.deb")]
    with tempfile.TemporaryDirectory() as tmp:
        for deb in debs:
            subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        # -f turns pretty-printing off: one verse a line, "Ge1:1 In the beginning ..."
        out = subprocess.run(
            [f"{tmp}/usr/bin/bible", "-f", "-p", f"{tmp}/usr/lib", GENESIS],
            check=True, capture_output=True, text=True, encoding="ascii",
        ).stdout
    chapters: dict[int, list[str]] = {}
    for line in out.splitlines():
        m = re.fullmatch(r"Ge(\d+):(\d+) (.+)", line)
        if m is None:
            raise ValueError(f"unexpected line from bible: {line!r}")
        verses = chapters.setdefault(int(m[1]), [])
        assert int(m[2]) == len(verses) + 1, f"verse out of order at {line[:12]!r}"
        verses.append(" ".join(m[3].split()))  # collapse any runs of spaces
    n_verses = sum(map(len, chapters.values()))
    assert len(chapters) == GENESIS_CHAPTERS and n_verses == GENESIS_VERSES, (
        len(chapters), n_verses)
    return "\n\n".join("\n".join(v) for _, v in sorted(chapters.items())) + "\n"


def make_corpus(out: Path, deb_dir: Path) -> None:
    text = genesis_text(deb_dir)
    assert text.isascii()
    out.write_text(text, encoding="ascii", newline="\n")
    print(f"wrote {out.relative_to(ROOT)}: {len(text)} characters, "
          f"{len(set(text))} distinct, {text.count(chr(10))} lines")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["digits", "corpus"], default=None)
    ap.add_argument("--deb-dir", type=Path, default=Path("/var/cache/apt/archives"),
                    help="folder holding bible-kjv_*.deb and bible-kjv-text_*.deb")
    args = ap.parse_args()
    written = []
    if args.only in (None, "digits"):
        make_digits(OUT_DIR / "digits.npz")
        written.append(OUT_DIR / "digits.npz")
    if args.only in (None, "corpus"):
        make_corpus(OUT_DIR / "corpus.txt", args.deb_dir)
        written.append(OUT_DIR / "corpus.txt")
    for path in written:
        print(f"sha256 {sha256(path)}  {path.name}  ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
