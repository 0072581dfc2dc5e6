"""The pre-flight label report: before training, which tokens of each example carry a loss.

Tokenisation is the one TRL does (the chat template with `return_assistant_tokens_mask`, cut at max_length),
so the report describes what training will see. Two faults stop the run, because both train silently wrong:
an example with no trained token at all, and an example whose answer is cut off by max_length (the model would
learn to stop mid-answer, or never see the <|end|> that teaches it to stop).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

from babyllama.errors import BabyLlamaError


@dataclass
class LabelReport:
    examples: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    min_trained: int = 0
    max_trained: int = 0
    mean_trained: float = 0.0
    max_length: Optional[int] = None
    assistant_only_loss: bool = True
    no_trained_token: list = field(default_factory=list)  # example indices
    truncated_answer: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        share = self.trained_tokens / max(1, self.tokens)
        return (f"label report: {self.examples} examples, {self.tokens} tokens, {self.trained_tokens} trained "
                f"({share:.0%}); trained per example min {self.min_trained} / mean {self.mean_trained:.1f} / max "
                f"{self.max_trained}; max_length {self.max_length}; "
                f"loss on {'assistant turns only' if self.assistant_only_loss else 'every token'}")


def example_labels(tokenizer, example: dict, assistant_only: bool,
                   max_length: Optional[int]) -> tuple[list, list, bool]:
    """(input_ids, trained flags, answer truncated) of one example, cut at max_length like TRL."""
    if "messages" in example:
        out = tokenizer.apply_chat_template(example["messages"], tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        ids, assistant = list(out["input_ids"]), list(out["assistant_masks"])
        if not any(assistant):
            raise BabyLlamaError("the chat template marks no assistant token (it needs {% generation %} markers "
                                 "around the assistant's answer); use babyllama's template or set "
                                 "--assistant_only_loss false")
        last = max(i for i, m in enumerate(assistant) if m)
        truncated = max_length is not None and last >= max_length
        trained = assistant if assistant_only else [1] * len(ids)
    else:  # plain text: every token is trained; TRL appends EOS
        ids = tokenizer(example["text"])["input_ids"] + [tokenizer.eos_token_id]
        trained, truncated = [1] * len(ids), False
    if max_length is not None:
        ids, trained = ids[:max_length], trained[:max_length]
    # The first token is never a target (nothing predicts it).
    trained = [0] + list(trained[1:])
    return ids, trained, truncated


def label_report(tokenizer, examples: list[dict], assistant_only: bool, max_length: Optional[int]) -> LabelReport:
    report = LabelReport(max_length=max_length, assistant_only_loss=assistant_only)
    counts = []
    for index, example in enumerate(examples):
        ids, trained, truncated = example_labels(tokenizer, example, assistant_only, max_length)
        n = int(sum(trained))
        counts.append(n)
        report.tokens += len(ids)
        if n == 0:
            report.no_trained_token.append(index)
        if truncated:
            report.truncated_answer.append(index)
    report.examples = len(examples)
    report.trained_tokens = sum(counts)
    if counts:
        report.min_trained, report.max_trained = min(counts), max(counts)
        report.mean_trained = report.trained_tokens / len(counts)
    return report


def check_report(report: LabelReport, context: Optional[int] = None, model: Optional[str] = None) -> None:
    """Hard errors, naming the first examples at fault and what to do."""
    problems = []
    if report.no_trained_token:
        problems.append(f"{len(report.no_trained_token)} example(s) have no trained token (indices "
                        f"{report.no_trained_token[:10]}): their answers are empty or cut away")
    if report.truncated_answer:
        problems.append(f"{len(report.truncated_answer)} example(s) have their answer cut off by max_length "
                        f"{report.max_length} (indices {report.truncated_answer[:10]})")
    if not problems:
        return
    fixes = "Shorten or remove those examples"
    if report.truncated_answer:
        cut = len(report.truncated_answer)
        if context is not None and report.max_length is not None and report.max_length >= context:
            # max_length is already the model's context: raising it is no way out.
            fixes = (f"max_length is already the model's context ({context} tokens). Make the data for this model: "
                     f"`babyllama prepare-sft --model {model or 'MODEL'} ...` keeps only stories that fit, or add "
                     f"--drop_truncated true to train without these {cut} example(s)")
        else:
            fixes += (f", raise --max_length (up to the model's context{f', {context}' if context else ''}), "
                      f"or add --drop_truncated true to train without these {cut} example(s)")
    raise BabyLlamaError("pre-flight label check failed: " + "; ".join(problems) + ". " + fixes)
