"""A self-check quiz with immediate feedback that also works on the static site.

Each question is an explorable whose only control is the answer: every answer's feedback is
precomputed, so choosing one shows its feedback at once, with or without a kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

from ipywidgets import VBox

from labsupport.errors import LabInputError
from labsupport.views.explorable import Choice, Html, explore

PROMPT = "— choose an answer —"


@dataclass(frozen=True)
class Question:
    """One multiple-choice question: the options, the index of the right one, and why."""

    text: str
    options: tuple[str, ...]
    answer: int
    why: str

    def __post_init__(self) -> None:
        if not 0 <= self.answer < len(self.options):
            raise LabInputError("answer", self.answer, f"an index into the {len(self.options)} options")

    def feedback(self, chosen: int | None) -> str:
        """The feedback shown for an answer (None: nothing chosen yet)."""
        if chosen is None:
            return ""
        if chosen == self.answer:
            return f"✅ Right. {self.why}"
        return f"❌ Not quite: “{self.options[chosen]}” is not it. Try again."


class Quiz(VBox):
    """The questions stacked; its short repr is what nbval compares."""

    def __repr__(self) -> str:
        return f"Quiz: {len(self.children)} questions"


def quiz(*questions: Question) -> Quiz:
    """Show questions one under another, each with a dropdown of answers and immediate feedback."""
    boxes = []
    for number, question in enumerate(questions, 1):

        def render(answer, question=question):
            text = question.feedback(answer)
            return Html(f'<div class="lab-quiz-feedback">{text}</div>') if text else Html("")

        boxes.append(
            explore(
                render,
                title=f"Q{number}. {question.text}",
                answer=Choice([(PROMPT, None), *((o, i) for i, o in enumerate(question.options))], label="answer"),
            )
        )
    return Quiz(boxes)
