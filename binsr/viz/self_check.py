"""A self-check quiz at the end of each notebook: multiple-choice questions that answer "right" or "not quite".

Plain ipywidgets: per question a prompt, radio buttons, a Check button and a line of feedback. No slider,
dropdown, checkbox or toggle button: tests/browser moves every such control it finds as if it drew a figure,
and it leaves widgets of class "binsr-quiz" alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import ipywidgets as widgets

RIGHT, WRONG, NO_ANSWER = "✓ Right.", "✗ Not quite.", "Pick an answer first."


@dataclass(frozen=True)
class Question:
    """A multiple-choice question: `options[answer]` is right; `why` is shown with a right answer, `hint`
    (e.g. the section to re-read) with a wrong one. The prompt may contain LaTeX between $ signs."""

    prompt: str
    options: tuple[str, ...]
    answer: int
    why: str
    hint: str = ""

    def __post_init__(self):
        object.__setattr__(self, "options", tuple(self.options))
        if len(self.options) < 2 or len(set(self.options)) != len(self.options):
            raise ValueError(f"{self.prompt!r}: needs at least two options, all different; got {self.options}")
        if not 0 <= self.answer < len(self.options):
            raise ValueError(
                f"{self.prompt!r}: answer={self.answer} is not an option index (0-{len(self.options) - 1})"
            )

    def feedback(self, choice: int | None) -> str:
        """What the student reads after checking option `choice` (None: nothing picked)."""
        if choice is None:
            return NO_ANSWER
        if choice == self.answer:
            return f"{RIGHT} {self.why}"
        return f"{WRONG} {self.hint or 'Try another answer.'}"


class QuestionWidget(widgets.VBox):
    """One `Question`: prompt, options (none picked at first), Check, feedback."""

    def __init__(self, number: int, question: Question):
        self.question = question
        self.choices = widgets.RadioButtons(options=question.options, index=None, layout={"width": "auto"})
        self.check = widgets.Button(description="Check", layout={"width": "8em"})
        self.feedback = widgets.HTMLMath(value="")
        self.check.on_click(lambda _: self.show_feedback())
        prompt = widgets.HTMLMath(value=f"<b>{number}.</b> {question.prompt}")
        super().__init__([prompt, self.choices, widgets.HBox([self.check, self.feedback])])

    def show_feedback(self) -> None:
        self.feedback.value = self.question.feedback(self.choices.index)


def quiz(questions: Sequence[Question]) -> widgets.VBox:
    """The self-check of a notebook: 3-5 `Question`s, each checked on its own."""
    if not 1 <= len(questions) <= 8:
        raise ValueError(f"a quiz of {len(questions)} questions: give between 1 and 8")
    box = widgets.VBox([QuestionWidget(i, q) for i, q in enumerate(questions, 1)])
    box.add_class("binsr-quiz")
    return box
