"""`python -m posttrainbench.evaluation.original install`: create the pinned original-scorer environment."""

import sys

from posttrainbench.errors import PtbError
from posttrainbench.evaluation import original


def main(argv: list[str]) -> int:
    if argv != ["install"]:
        print("usage: python -m posttrainbench.evaluation.original install", file=sys.stderr)
        return 2
    try:
        print(original.install(quiet=False))
        print(original.versions())
    except PtbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
