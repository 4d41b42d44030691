"""Lineage on real weights: real fine-tunes of SmolLM2-135M (full, LoRA merged, a longer run) descend from it;
checkpoints of the same architecture that do not (a fresh initialisation, the base with its rows shuffled, the
base with one foreign decoder layer, a 0.7/0.3 blend with another model) are caught. The margins between the two
groups are what the thresholds rely on (the calibration table in integrity/lineage.py comes from here)."""

from pathlib import Path

import pytest
import torch

from posttrainbench.integrity import lineage

pytestmark = pytest.mark.slow

TEXT = "Janet has 3 apples and buys 5 more. How many apples does she have? She has 3 + 5 = 8 apples. #### 8"


def _train(model, tokenizer, steps: int, lr: float, texts: list[str] = (TEXT,)) -> None:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for step in range(steps):
        batch = tokenizer([texts[step % len(texts)]], return_tensors="pt")
        model(**batch, labels=batch["input_ids"]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def _numbers(base: Path, other: Path) -> dict:
    stats, missing = lineage.compare(base, other)
    assert missing == []
    return lineage.summary(stats)


@pytest.fixture(scope="module")
def variants(small_model, tmp_path_factory):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("lineage")
    tokenizer = AutoTokenizer.from_pretrained(small_model)
    saved = {}

    full = AutoModelForCausalLM.from_pretrained(small_model, dtype=torch.float32)
    _train(full, tokenizer, steps=3, lr=1e-3)  # a high learning rate: larger moves than a usual fine-tune
    full.to(torch.bfloat16).save_pretrained(out / "full")
    saved["full fine-tune"] = out / "full"
    del full

    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(small_model, dtype=torch.float32),
                          LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    _train(lora, tokenizer, steps=3, lr=1e-3)
    lora.merge_and_unload().to(torch.bfloat16).save_pretrained(out / "lora")
    saved["LoRA merged"] = out / "lora"
    del lora

    import json

    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "train.jsonl"
    texts = [" ".join(json.loads(line).values()) for line in data.read_text().splitlines()[:30]]
    longer = AutoModelForCausalLM.from_pretrained(small_model, dtype=torch.float32)
    _train(longer, tokenizer, steps=30, lr=1e-4, texts=texts)
    longer.to(torch.bfloat16).save_pretrained(out / "longer")
    saved["longer run"] = out / "longer"
    del longer

    torch.manual_seed(1)
    fresh = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(small_model))
    fresh.to(torch.bfloat16).save_pretrained(out / "fresh")
    saved["fresh initialisation"] = out / "fresh"

    foreign = AutoModelForCausalLM.from_pretrained(small_model, dtype=torch.float32)
    fresh_state = fresh.state_dict()
    with torch.no_grad():
        for name, tensor in foreign.state_dict().items():
            if ".layers.15." in name and tensor.ndim >= 2:
                tensor.copy_(fresh_state[name].float())
    foreign.to(torch.bfloat16).save_pretrained(out / "foreign")
    saved["one foreign layer"] = out / "foreign"

    shuffled = AutoModelForCausalLM.from_pretrained(small_model, dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in shuffled.state_dict().values():
            if tensor.ndim >= 2:
                tensor.copy_(tensor[torch.randperm(tensor.shape[0], generator=generator)])
    shuffled.to(torch.bfloat16).save_pretrained(out / "shuffled")
    saved["rows shuffled"] = out / "shuffled"

    # Another model with the base's norms and nothing else in common: the rows-shuffled one.
    blend = AutoModelForCausalLM.from_pretrained(small_model, dtype=torch.float32)
    other = shuffled.state_dict()
    with torch.no_grad():
        for name, tensor in blend.state_dict().items():
            if tensor.ndim >= 2:
                tensor.copy_(0.7 * tensor + 0.3 * other[name])
    blend.to(torch.bfloat16).save_pretrained(out / "blend")
    saved["blend 0.7/0.3"] = out / "blend"
    assert lineage.architecture_differences(lineage.config(small_model), lineage.config(out / "fresh")) == []
    return {name: _numbers(small_model, path) for name, path in saved.items()}


def test_fine_tunes_descend_and_unrelated_checkpoints_do_not(variants):
    for name, numbers in variants.items():
        print(f"{name:22s} median cosine {numbers['median_cosine']:.4f}  min {numbers['min_cosine']:.4f}  "
              f"median rel. L2 {numbers['median_rel_l2']:.4f}  below {lineage.MIN_TENSOR_COSINE}: "
              f"{numbers['share_below_min_cosine']:.0%}")
    related = [variants["full fine-tune"], variants["LoRA merged"], variants["longer run"]]
    unrelated = [variants["fresh initialisation"], variants["rows shuffled"]]
    assert all(lineage.descends(n) for n in related)
    assert not any(lineage.descends(n) for n in unrelated)
    foreign, blend = variants["one foreign layer"], variants["blend 0.7/0.3"]
    assert not lineage.descends(foreign) and not lineage.descends(blend)
    assert foreign["below_min_cosine"] == 7 and foreign["median_cosine"] > 0.999  # 7 of 211 matrices: 3 %
    assert 0.9 < blend["median_cosine"] < 0.94
    # Margins: the worst fine-tuned matrix and the blend's median are well clear of the thresholds.
    assert min(n["min_cosine"] for n in related) - lineage.MIN_TENSOR_COSINE > 0.09
    assert lineage.MIN_MEDIAN_COSINE - blend["median_cosine"] > 0.03
    # A wide margin: every matrix of a fine-tune stays closer to the base than any matrix of the others.
    assert min(n["min_cosine"] for n in related) > 0.9
    assert max(abs(n["median_cosine"]) for n in unrelated) < 0.05
    assert min(n["min_cosine"] for n in related) - max(n["median_cosine"] for n in unrelated) > 0.85
