"""What grading one submission returns: plain picklable data (workers send it to the parent)."""

from __future__ import annotations

from dataclasses import dataclass, field

GRADED, UNGRADABLE = "graded", "ungradable"


@dataclass
class CellScore:
    grade_id: str
    score: float
    max_score: float
    reason: str | None = None  # why points were lost (None: full marks or unknown)


@dataclass
class StudentResult:
    module_id: str
    student: str
    graded: bool
    reason: str | None = None  # why it could not be graded (graded=False)
    scores: list[CellScore] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # cells edited, deleted, re-scored, added
    log: str | None = None  # grading log, relative to the project root
    seconds: float = 0.0  # time spent grading this notebook (in its worker)
    # of which the probe/judge split: drawing inputs, handing them over, collecting the outputs,
    # decoding and judging them (what in-process hidden checks did not pay)
    judge_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # limits hit, refused operations, flags
    worker: str | None = None  # which worker process graded it
    # operations the course's own (given) cells tried and grading refused: not the student's
    # doing, so not in ``remarks``; ``summary`` reports them once
    course_notes: list[str] = field(default_factory=list)
    # for the parent to write (workers never touch the course directory):
    comments: dict[str, str | None] = field(default_factory=dict, repr=False)  # solution cells
    timestamp: str | None = field(default=None, repr=False)  # the submission's timestamp.txt
    autograded: dict | None = field(default=None, repr=False)  # the executed notebook (JSON)
    log_text: str | None = field(default=None, repr=False)

    @property
    def score(self) -> float:
        return sum(s.score for s in self.scores)

    @property
    def max_score(self) -> float:
        return sum(s.max_score for s in self.scores)

    @property
    def remarks(self) -> list[str]:
        """Everything ``tito grades`` shows under the scores: warnings, then notes."""
        return list(dict.fromkeys([*self.warnings, *self.notes]))

    def status_entry(self) -> dict:
        entry = {
            "status": GRADED if self.graded else UNGRADABLE,
            "log": self.log,
            "seconds": round(self.seconds, 1),
        }
        if self.graded:
            entry.update(score=self.score, max_score=self.max_score)
        else:
            entry["reason"] = self.reason
        if self.remarks:
            entry["notes"] = self.remarks
        return entry
