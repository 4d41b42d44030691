"""Throughput of collect's copy through the untrusted boundary (no-follow opens, holes kept) against
shutil.copyfile (kernel copy, follows links), on a dense file of random bytes and on a mostly sparse one.

    python benchmarks/untrusted_copy.py --gib 2
"""

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from posttrainbench import untrusted


def timed(copy) -> float:
    start = time.perf_counter()
    copy()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--dir", type=Path, default=None, help="where the files go (default: a temp folder)")
    args = parser.parse_args()
    size = int(args.gib * (1 << 30))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        with open(root / "dense", "wb") as handle:
            for _ in range(0, size, 1 << 24):
                handle.write(os.urandom(1 << 24))
        with open(root / "sparse", "wb") as handle:
            handle.write(os.urandom(1 << 20))
            handle.truncate(size)
        for name in ("dense", "sparse"):
            for label, copy in (("shutil.copyfile", lambda: shutil.copyfile(root / name, root / "out")),
                                ("untrusted.copy_file", lambda: untrusted.copy_file(root, name, root / "out"))):
                (root / "out").unlink(missing_ok=True)
                os.sync()
                seconds = timed(copy)
                on_disk = (root / "out").stat().st_blocks * 512
                print(f"{name:6s} {label:20s} {size / seconds / 1e9:6.2f} GB/s  ({seconds:.2f} s, "
                      f"{on_disk / 1e6:.0f} MB on disk)")


if __name__ == "__main__":
    main()
