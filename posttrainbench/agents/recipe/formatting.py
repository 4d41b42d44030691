"""Render examples with the chat template the evaluation will apply, then tokenize them for completion-only loss."""

from dataclasses import dataclass
from pathlib import Path

from posttrainbench.agents.recipe import log
from posttrainbench.errors import PtbError


def load_template(task_dir: Path, name: str | None, benchmark: str, tokenizer) -> str:
    """The evaluation's template: `templates/<name>` (its `_tool` variant for function calling, as the
    evaluation picks it), else the tokenizer's own."""
    if name:
        path = task_dir / "templates" / name
        tool_variant = path.with_name(f"{path.stem}_tool{path.suffix}")
        if benchmark == "bfcl" and tool_variant.is_file():
            path = tool_variant
        if not path.is_file():
            raise PtbError(f"chat template {path} is missing")
        return path.read_text()
    if not tokenizer.chat_template:
        raise PtbError("the base model has no chat template and none was named (--chat-template)")
    return tokenizer.chat_template


@dataclass
class Rendered:
    prompt: str
    completion: str


class ChatFormat:
    def __init__(self, tokenizer, template: str):
        self.tokenizer = tokenizer
        self.template = template
        self._warned = False

    def _apply(self, messages: list[dict], tools, generation: bool) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tools=tools, chat_template=self.template, tokenize=False, add_generation_prompt=generation
        )

    def render(self, example: dict) -> Rendered | None:
        messages, tools = example["messages"], example.get("tools")
        try:
            prompt = self._apply(messages[:-1], tools, True)
            full = self._apply(messages, tools, False)
        except Exception as exc:  # a template may reject a conversation shape (e.g. a system turn)
            if not self._warned:
                log(f"chat template rejected an example ({type(exc).__name__}: {exc}); skipping such examples")
                self._warned = True
            return None
        if not full.startswith(prompt):
            # templates that render the last turn differently from history cannot be split at a prefix
            return None
        return Rendered(prompt, full[len(prompt) :])

    def prompt_only(self, example: dict) -> str:
        return self._apply(example["messages"][:-1], example.get("tools"), True)

    def end_of_turn(self) -> int | None:
        """The special token that closes an assistant turn in this template (<|im_end|>, <end_of_turn>, ...);
        None when the template closes turns with plain text."""
        hello = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
        sample = self.render({"messages": hello})
        if sample is None:
            return None
        tok = self.tokenizer
        special = set(tok.all_special_ids) | {i for i, t in tok.added_tokens_decoder.items() if t.special}
        closing = [i for i in tok(sample.completion, add_special_tokens=False)["input_ids"] if i in special]
        return closing[-1] if closing else None


def tokenize(chat: ChatFormat, examples: list[dict], max_length: int) -> list[dict]:
    """Rows of `input_ids` + `completion_mask` (1 on the answer) that fit `max_length`.

    Prompt and completion are tokenized separately, as the evaluation's server sees the prompt alone and the
    model continues it. Examples longer than `max_length` are dropped, not cut: a cut answer never ends.
    """
    tok = chat.tokenizer
    rendered = [r for r in map(chat.render, examples) if r is not None]
    if not rendered:
        raise PtbError("no training example could be rendered with the chat template")
    # a template without an end-of-turn token still needs an answer that stops
    suffix = "" if chat.end_of_turn() is not None else tok.eos_token or ""
    prompts = tok([r.prompt for r in rendered], add_special_tokens=False)["input_ids"]
    answers = tok([r.completion + suffix for r in rendered], add_special_tokens=False)["input_ids"]
    rows = [
        {"input_ids": p + a, "completion_mask": [0] * len(p) + [1] * len(a)}
        for p, a in zip(prompts, answers, strict=True)
        if len(p) + len(a) <= max_length and a
    ]
    log(
        f"tokenized {len(rows)} of {len(examples)} examples (max {max_length} tokens; "
        f"{len(examples) - len(rendered)} not renderable, {len(rendered) - len(rows)} too long)"
    )
    return rows
