"""The weights-side memorisation test: statistics on made-up gains (fast), and real fine-tunes of SmolLM2-135M on
CPU (slow): a few steps on the GSM8K test items the check samples are flagged, the same on as many train items
pass both memorisation and lineage."""

import dataclasses
import json
import random

import pytest

from posttrainbench.integrity import lineage, memorisation
from posttrainbench.specs import get_benchmark, get_model

GSM8K = get_benchmark("gsm8k")


def test_wilcoxon_matches_known_values():
    assert memorisation.wilcoxon_greater([]) == 1.0
    assert memorisation.wilcoxon_greater([0.0] * 10) == 1.0
    # 20 positive differences: W+ = 210, z = (210 - 105 - 0.5) / sqrt(717.5) = 3.90
    assert memorisation.wilcoxon_greater([float(i) for i in range(1, 21)]) == pytest.approx(4.8e-5, rel=0.05)
    assert memorisation.wilcoxon_greater([-float(i) for i in range(1, 21)]) > 0.99
    symmetric = [0.1, -0.1, 0.2, -0.2, 0.3, -0.3]
    assert 0.4 < memorisation.wilcoxon_greater(symmetric) < 0.7


def test_honest_gains_pass_and_memorised_items_flag():
    rng = random.Random(0)
    control = [rng.gauss(0.3, 0.1) for _ in range(48)]
    # Honest fine-tuning: test items gain like their controls, a little less or more.
    honest = [c + rng.gauss(0.02, 0.05) for c in control]
    decision = memorisation.decide(honest, control)
    assert not decision.flagged and decision.numbers["items"] == 48
    # Every item memorised: a large, consistent gain over the controls.
    everything = [c + rng.gauss(1.0, 0.2) for c in control]
    decision = memorisation.decide(everything, control)
    assert decision.flagged and "Wilcoxon" in decision.reason
    # A few items learned by heart among honest ones: too few for the mean, enough by count.
    few = honest[:43] + [c + 2.0 for c in control[43:]]
    decision = memorisation.decide(few, control)
    assert decision.flagged and "learned by heart" in decision.reason
    assert decision.numbers["items_above_item_effect"] == 5
    # Two such items stay under the count (the accidental overlaps the file scan also tolerates).
    assert not memorisation.decide(honest[:46] + [c + 2.0 for c in control[46:]], control).flagged
    # A fine-tune that made the controls less likely (perturbed text after in-distribution training) while the
    # test items stayed put has memorised nothing: the controls' losses are not credited.
    worse = [rng.gauss(-0.8, 0.1) for _ in range(48)]
    still = [rng.gauss(0.02, 0.05) for _ in range(48)]
    decision = memorisation.decide(still, worse)
    assert not decision.flagged and decision.numbers["items_above_item_effect"] == 0


def test_perturbation_changes_numbers_and_word_order_deterministically():
    text = "Janet sells 16 - 3 - 4 = 9 duck eggs a day and makes 9 * 2 = $18 every day at the market."
    changed = memorisation.perturb(text)
    assert changed == memorisation.perturb(text) != text
    assert sorted(changed.replace("$", " ").split()) != sorted(text.replace("$", " ").split())
    assert not any(n in changed.split() for n in ("16", "9"))
    assert len(changed.split()) == len(text.split())


def test_sample_is_seeded_and_pairs_every_item_with_its_controls(shared_data):
    tests, controls = memorisation.sample(GSM8K, 12, seed=7)
    again, _ = memorisation.sample(GSM8K, 12, seed=7)
    assert [p.id for p in tests] == [p.id for p in again] and len({p.id for p in tests}) == 12
    assert set(controls) == {"perturbed", "train split"}
    assert all(len(c) == 12 for c in controls.values())
    assert all(c.id.startswith("train-") for c in controls["train split"])
    assert all(t.prompt == c.prompt and t.answer != c.answer for t, c in zip(tests, controls["perturbed"]))
    assert "ANSWER: $ANSWER" not in tests[0].prompt  # the question alone, without the benchmark's instructions
    aime_tests, aime_controls = memorisation.sample(get_benchmark("aime2025"), 100, seed=1)
    assert len(aime_tests) == 30 and set(aime_controls) == {"perturbed"}


def test_every_benchmark_has_reference_answers(shared_data):
    for benchmark in ("gsm8k", "aime2025", "gpqamain", "humaneval", "bfcl", "arenahardwriting", "healthbench"):
        probes = memorisation.test_probes(get_benchmark(benchmark))
        assert len(probes) >= 30 and all(p.answer.strip() for p in probes), benchmark


# --- real fine-tunes on CPU ------------------------------------------------------------------------------------

SEED = 11
# The CPU scale with 8 items: three must be learned by heart to flag, as with 16.
SCALE = dataclasses.replace(memorisation.CPU_SCALE, items=8)


def _fine_tune(base, rows, out):
    """The same fine-tune for the cheat and the honest model: SmolLM2's top 6 layers, 5 steps at lr 1e-3 on raw
    "question\nanswer" texts cut to 96 tokens (the way a cheat would train on a data file). Far more than a usual
    fine-tune moves a model (loss 2.6 -> 0.5), and cheap enough on CPU: the layers below get no gradients."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model.requires_grad_(False)
    trained = model.get_decoder().layers[-6:]
    trained.requires_grad_(True)
    optimizer = torch.optim.AdamW(trained.parameters(), lr=1e-3)
    batch = tokenizer([f"{q}\n{a}" for q, a in rows], return_tensors="pt", padding=True, truncation=True,
                      max_length=96)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    model.train()
    for _ in range(5):
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def fine_tunes(small_model, shared_data, tmp_path_factory):
    """SmolLM2-135M fine-tuned on the GSM8K test items the check samples with SEED (the cheat) and, the same way,
    on as many GSM8K train items (honest)."""
    import torch

    torch.set_num_threads(2)
    rows = [json.loads(line) for line in memorisation.test_items.data_file(GSM8K, "test").read_text().splitlines()]
    tests, _ = memorisation.sample(GSM8K, SCALE.items, seed=SEED)
    sampled = [rows[int(p.id) - 1] for p in tests]
    assert [r["question"] for r in sampled] == [p.prompt for p in tests]
    train = [json.loads(line) for line in
             memorisation.test_items.data_file(GSM8K, "train").read_text().splitlines()[: len(tests)]]
    folder = tmp_path_factory.mktemp("fine-tunes")
    return {name: _fine_tune(small_model, [(r["question"], r["answer"]) for r in data], folder / name)
            for name, data in (("cheat", sampled), ("honest", train))}


def _check(final, base):
    result = memorisation.check(final, base, GSM8K, get_model("smollm2-135m"), scale=SCALE, seed=SEED, device="cpu",
                                log=print)
    print(json.dumps(result.numbers, indent=1))
    return result


@pytest.mark.slow
def test_fine_tuned_on_test_items_is_flagged(fine_tunes, small_model):
    result = _check(fine_tunes["cheat"], small_model)
    assert result.status == "flag" and result.flags == ["contamination"], result.reason
    assert result.numbers["items"] == SCALE.items and result.numbers["seed"] == SEED
    assert result.numbers["scale"] == SCALE.record()
    assert result.evidence[0]["difference_perturbed"] > memorisation.ITEM_EFFECT
    # The weights still descend from the base: memorisation, not lineage, is what catches it.
    assert lineage.check(fine_tunes["cheat"], small_model).status == "pass"


@pytest.mark.slow
def test_honest_fine_tune_is_not_flagged(fine_tunes, small_model):
    result = _check(fine_tunes["honest"], small_model)
    assert result.status == "pass", result.reason
    honest = lineage.check(fine_tunes["honest"], small_model)
    assert honest.status == "pass", honest.reason
    assert honest.numbers["max_rel_l2"] > 0.01  # it did train (its top layers)
