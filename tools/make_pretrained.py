"""Make the pretrained weights shipped in tinytorch/datasets/pretrained_<name>.npz.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python tools/make_pretrained.py            # every recipe
    OPENBLAS_NUM_THREADS=1 .venv/bin/python tools/make_pretrained.py digits_cnn # one

Each recipe of `tinytorch.core.pretrained.PRETRAINED` is trained from scratch on the bundled
digits (its seed, epochs, optimizer and batch size are in the recipe), checked against the
recipe's minimum test accuracy, and saved as a float32 state_dict (`np.savez_compressed`,
fixed zip timestamps so the bytes are reproducible for one numpy/zlib/BLAS). Prints the test
accuracy, the size and the sha256 of each file; tinytorch/datasets/README.md records them.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import time
import zipfile
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one BLAS thread: the run is reproducible

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tinytorch.core.pretrained import (  # noqa: E402
    GPT_RECIPES,
    PRETRAINED,
    ZOO_RECIPES,
    digits_test_accuracy,
    gpt_val_loss,
    train_recipe,
    weights_file,
)

OUT_DIR = ROOT / "tinytorch" / "datasets"


def npz_bytes(state: dict[str, np.ndarray]) -> bytes:
    """A compressed .npz of ``state`` with fixed timestamps (reproducible bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(state):
            arr = io.BytesIO()
            np.save(arr, np.ascontiguousarray(state[key], dtype=np.float32))
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, arr.getvalue())
    return buf.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    every = [*PRETRAINED, *GPT_RECIPES, *ZOO_RECIPES]
    parser.add_argument("names", nargs="*", help=f"recipes (default: {', '.join(every)})")
    args = parser.parse_args(argv)
    failed = 0
    for name in args.names or every:
        t0 = time.perf_counter()
        model = train_recipe(name)
        secs = time.perf_counter() - t0
        if name in GPT_RECIPES:
            loss = gpt_val_loss(model, name)
            ok = loss <= GPT_RECIPES[name].max_val_loss
            quality = f"val loss {loss:.3f} nats/char (needs <= {GPT_RECIPES[name].max_val_loss})"
        else:
            acc = digits_test_accuracy(model, name)
            need = {**PRETRAINED, **ZOO_RECIPES}[name].min_test_accuracy
            ok = acc >= need
            quality = f"test accuracy {acc:.4f} (needs >= {need})"
        data = npz_bytes(model.state_dict())
        path = OUT_DIR / weights_file(name)
        if ok:
            path.write_bytes(data)
        else:
            failed += 1
        print(
            f"{name}: {'wrote' if ok else 'NOT written'} {path.relative_to(ROOT)}: {quality}, "
            f"{len(data):,} bytes, sha256 "
            f"{hashlib.sha256(data).hexdigest()}, trained in {secs:.1f} s"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
