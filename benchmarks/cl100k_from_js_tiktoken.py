"""Rebuild tiktoken's cl100k_base.tiktoken from the npm package js-tiktoken, for machines that reach npm but not
the file's own URL (the contamination benchmark runs the original's scanner, which tokenizes with it).

    npm pack js-tiktoken@1.0.21 && tar xzf js-tiktoken-1.0.21.tgz
    python benchmarks/cl100k_from_js_tiktoken.py package/dist/ranks/cl100k_base.js cl100k_base.tiktoken

js-tiktoken stores the ranks as lines of `! first-rank token token ...` (base64 tokens with consecutive ranks);
tiktoken's file has one `token rank` per line. The result is checked against the sha256 tiktoken expects.
"""

import hashlib
import json
import sys
from pathlib import Path

SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"


def main() -> int:
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    text = source.read_text()
    ranks = json.loads(text[text.index("{") : text.rindex("}") + 1])["bpe_ranks"]
    pairs = []
    for line in filter(None, ranks.split("\n")):
        _, first, *tokens = line.split(" ")
        pairs += [(int(first) + i, token) for i, token in enumerate(tokens)]
    data = "".join(f"{token} {rank}\n" for rank, token in sorted(pairs)).encode()
    if hashlib.sha256(data).hexdigest() != SHA256:
        print(f"the ranks in {source} do not give cl100k_base.tiktoken (sha256 differs)", file=sys.stderr)
        return 1
    target.write_bytes(data)
    print(f"{target}: {len(pairs)} ranks, sha256 {SHA256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
