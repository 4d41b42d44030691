"""Token ids back to text with the base model's tokenizer: a tokenised copy of test items (a .npy of input_ids, a
datasets folder, a torch or safetensors file of ids) reads as the items again."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MIN_TOKENS = 8
ROW_TOKENS = 8192  # a flat array is cut into rows of this many ids


@dataclass
class Detokenizer:
    tokenizer: object  # tokenizers.Tokenizer
    vocab: int

    @classmethod
    def from_model_dir(cls, model_dir: Path | None) -> "Detokenizer | None":
        """The tokenizer of a (harness-owned) model folder; None when it has no tokenizer.json."""
        path = Path(model_dir) / "tokenizer.json" if model_dir else None
        if path is None or not path.is_file():
            return None
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path))
        return cls(tokenizer, tokenizer.get_vocab_size(with_added_tokens=True))

    def ids(self, values: np.ndarray) -> np.ndarray | None:
        """`values` as token ids, or None when they cannot be: not integers, too few, or out of the vocabulary
        (negative values are the -100 of label masks and padding and are dropped)."""
        if values.dtype.kind not in "iu" or values.size < MIN_TOKENS:
            return None
        flat = values.reshape(-1)
        if flat.dtype.kind == "i":
            flat = flat[flat >= 0]
        if flat.size < MIN_TOKENS or int(flat.max()) >= self.vocab:
            return None
        # Counts, masks and lengths are integers too: ids of text are varied.
        if len(set(flat[:4096].tolist())) < min(8, flat.size // 4):
            return None
        return flat

    def decode(self, values: np.ndarray) -> str | None:
        """The text of an array of ids (rows of a 2-D array separately), or None if they are not ids."""
        flat = self.ids(values)
        if flat is None:
            return None
        if values.ndim == 2 and values.shape[1] <= ROW_TOKENS:
            rows = [row[row >= 0] if row.dtype.kind == "i" else row for row in values]
        else:
            rows = [flat[i : i + ROW_TOKENS] for i in range(0, flat.size, ROW_TOKENS)]
        return "\n".join(self.tokenizer.decode_batch([r.tolist() for r in rows], skip_special_tokens=True))

    def decode_rows(self, rows: list[list[int]]) -> str | None:
        """The text of ragged rows of ids (a list column), or None if they are not ids."""
        if not rows:
            return None
        flat = np.fromiter((v for r in rows for v in r), np.int64)
        if self.ids(flat) is None:
            return None
        rows = [[v for v in r if v >= 0] for r in rows]
        return "\n".join(self.tokenizer.decode_batch(rows, skip_special_tokens=True))
