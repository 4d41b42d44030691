"""Lineage on real weights: short real fine-tunes of SmolLM2-135M (full, and LoRA merged) descend from it;
checkpoints of the same architecture that do not (a fresh initialisation, the base with its rows shuffled) are
far away. The margin between the two groups is what the thresholds rely on."""

from pathlib import Path

import pytest
import torch

from posttrainbench.integrity import lineage

pytestmark = pytest.mark.slow

TEXT = "Janet has 3 apples and buys 5 more. How many apples does she have? She has 3 + 5 = 8 apples. #### 8"


def _train(model, tokenizer, steps: int, lr: float) -> None:
    batch = tokenizer([TEXT], return_tensors="pt")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
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

    torch.manual_seed(1)
    fresh = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(small_model))
    fresh.to(torch.bfloat16).save_pretrained(out / "fresh")
    saved["fresh initialisation"] = out / "fresh"

    shuffled = AutoModelForCausalLM.from_pretrained(small_model, dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in shuffled.state_dict().values():
            if tensor.ndim >= 2:
                tensor.copy_(tensor[torch.randperm(tensor.shape[0], generator=generator)])
    shuffled.to(torch.bfloat16).save_pretrained(out / "shuffled")
    saved["rows shuffled"] = out / "shuffled"
    assert lineage.architecture_differences(lineage.config(small_model), lineage.config(out / "fresh")) == []
    return {name: _numbers(small_model, path) for name, path in saved.items()}


def test_fine_tunes_descend_and_unrelated_checkpoints_do_not(variants):
    for name, numbers in variants.items():
        print(f"{name:22s} median cosine {numbers['median_cosine']:.4f}  min {numbers['min_cosine']:.4f}  "
              f"median rel. L2 {numbers['median_rel_l2']:.4f}  below {lineage.MIN_TENSOR_COSINE}: "
              f"{numbers['share_below_min_cosine']:.0%}")
    related = [variants["full fine-tune"], variants["LoRA merged"]]
    unrelated = [variants["fresh initialisation"], variants["rows shuffled"]]
    assert all(lineage.descends(n) for n in related)
    assert not any(lineage.descends(n) for n in unrelated)
    # A wide margin: every matrix of a fine-tune stays closer to the base than any matrix of the others.
    assert min(n["min_cosine"] for n in related) > 0.9
    assert max(abs(n["median_cosine"]) for n in unrelated) < 0.05
    assert min(n["min_cosine"] for n in related) - max(n["median_cosine"] for n in unrelated) > 0.85
