"""Regenerate long-context.jsonl: 10 deterministic long-document prompts (1-3k words each).

Run from the repository root: python prompts/make_long_context.py
The documents are random sentences from perfbench's fixed word list (seed 2024), so the file is
the same on every machine; what matters for load tests is the length, not the meaning.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not
from perfbench.workload.prompts import WORDS  # noqa: E402

TASKS = (
    "Summarize the following report in five bullet points.",
    "Read the document below and list every decision it mentions.",
    "Write a one-paragraph abstract for the following text.",
    "Extract the three most important points from this transcript.",
    "Identify the main argument of the following essay and criticise it.",
)


def document(rng: np.random.Generator, words: int) -> str:
    paragraphs, sentence, paragraph, count = [], [], [], 0
    while count < words:
        sentence.append(WORDS[rng.integers(len(WORDS))])
        count += 1
        if len(sentence) >= rng.integers(8, 22):
            paragraph.append(" ".join(sentence).capitalize() + ".")
            sentence = []
            if len(paragraph) >= rng.integers(4, 9):
                paragraphs.append(" ".join(paragraph))
                paragraph = []
    paragraph.append(" ".join(sentence).capitalize() + ".")
    paragraphs.append(" ".join(paragraph))
    return "\n\n".join(paragraphs)


def main() -> None:
    rng = np.random.default_rng(2024)
    out = Path(__file__).with_name("long-context.jsonl")
    with out.open("w", encoding="utf-8") as f:
        for i, words in enumerate(np.linspace(1000, 2800, 10).astype(int)):
            prompt = f"{TASKS[i % len(TASKS)]}\n\n{document(rng, int(words))}"
            f.write(json.dumps({"prompt": prompt, "max_tokens": 256}) + "\n")


if __name__ == "__main__":
    main()
