"""How a tuning run explains itself (module 19, hand-written library code).

`TuningRecord` holds what a tuning run found and everything it measured; module 19's
`TuningResult` (`tinytorch.autotuning`) is a `TuningRecord` whose `pareto()` is the learner's
own `pareto_front`, so this file (which sits below module 19) never computes a front itself:
the functions take it as an argument. `candidate_table` (every candidate measured), `report_text`
(the choice and its plan, or why nothing fits and what came closest), `diagnose` (per
constraint of an infeasible request) and `plot_tuning` (accuracy against size, the front dashed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["TuningRecord", "candidate_table", "diagnose", "fmt_value", "plot_tuning",
           "report_text"]


def fmt_value(metric: str, v: float) -> str:
    """A metric's value in its unit: KiB for bytes, ms for latency, 4 decimals otherwise."""
    if metric in ("model_bytes", "peak_memory"):
        return f"{v / 1024:,.1f} KiB"
    if metric == "latency_ms":
        return f"{v:.3f} ms"
    return f"{v:.4f}"


def diagnose(result) -> list[str]:
    """Per constraint: how often it fails and the best value any candidate reached."""
    lines = []
    for rule, n in result.skipped.items():
        if rule.startswith("size budget"):
            lines.append(f"max_bytes: {n} of {result.space_size} configurations are too big "
                         "(sizes are exact; nothing was trained)")
    by_name: dict[str, list] = {}
    for c in result.candidates:
        for v in c.violations:
            by_name.setdefault(v.constraint, []).append((c, v))
    for name, rows in by_name.items():
        v0 = rows[0][1]
        vals = [c.metrics.to_dict()[v0.metric] for c in result.candidates]
        best = min(vals) if v0.upper else max(vals)
        lines.append(
            f"{name}: fails for {len(rows)} of {result.evaluations} measured; the best "
            f"{v0.metric} measured is {fmt_value(v0.metric, best)} (limit "
            f"{fmt_value(v0.metric, v0.limit)})"
        )
    return lines


def candidate_table(result, front: Sequence) -> str:
    """One row per candidate; "vs base" is baseline ms / candidate ms measured in the same
    interleaved rounds (median ± half its interquartile range over the rounds); `*` marks the
    candidates of `front`."""
    on_front = {id(c) for c in front}
    lines = [f" {'candidate':<32}{'phase':>11}{'acc':>8}{'KiB':>8}{'ms':>8}{'vs base':>13}"
             f"{'peak KiB':>10}  verdict  (* = Pareto front)"]
    for c in result.candidates:
        m = c.metrics
        verdict = "ok" if c.feasible else ", ".join(v.constraint for v in c.violations)
        lines.append(
            f"{'*' if id(c) in on_front else ' '}{c.config.label():<32}{c.phase:>11}"
            f"{m.accuracy:>8.4f}{m.model_bytes / 1024:>8.1f}{m.latency_ms:>8.3f}"
            f"{m.vs_baseline_text():>13}{m.peak_memory / 1024:>10.1f}  {verdict}"
        )
    return "\n".join(lines)


def report_text(result, table: str) -> str:
    """The whole report: target, budgets, hardware, counts, then the choice or the diagnosis."""
    b = result.baseline
    skipped = ", ".join(f"{k}: {v}" for k, v in result.skipped.items()) or "none"
    out = [
        f"target {result.target!r}, objective {result.objective!r}",
        f"constraints {result.constraints}",
        f"hardware {result.hardware.describe()}",
        f"{result.evaluations} of {result.space_size} configurations evaluated "
        f"({result.cache_hits} from the cache) in {result.seconds:.1f}s; skipped by rule: "
        f"{skipped}",
        *result.notes,
        f"baseline latency {b.latency_ms:.3f} ms (interquartile range "
        f"{b.latency_spread_ms:.3f} ms; against itself in the same rounds "
        f"{b.vs_baseline_text()}); every "
        "'vs base' is measured in the same interleaved rounds as the baseline, one BLAS "
        "thread",
    ]
    if result.feasible:
        m = result.best.metrics
        out.append(
            f"CHOSEN {result.best.config.label()}: accuracy {m.accuracy:.4f} (baseline "
            f"{b.accuracy:.4f}), {m.model_bytes:,} B, {m.latency_ms:.3f} ms "
            f"({m.vs_baseline_text()} vs the baseline), peak {m.peak_memory:,} B"
        )
        out.append("plan:\n" + result.pipeline.describe())
    else:
        out.append("NO CONFIGURATION MEETS THE CONSTRAINTS. Why:")
        out += ["  " + line for line in diagnose(result)]
        out.append("closest candidates (nothing is returned as a silent best effort):")
        out += [f"  {c.config.label()}: " + "; ".join(map(str, c.violations))
                for c in result.closest]
    return "\n".join(out) + "\n" + table


def plot_tuning(result, front: Sequence, ax=None, title: str | None = None):
    """Accuracy against model bytes: feasible and violating candidates, `front` (the Pareto
    front of accuracy and size) dashed, the choice circled, the size budget dotted."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4))
    for ok, style, lab in ((True, "o", "meets constraints"), (False, "x", "violates")):
        group = [c for c in result.candidates if c.feasible == ok]
        if group:
            ax.scatter([c.metrics.model_bytes / 1024 for c in group],
                       [c.metrics.accuracy for c in group], marker=style, label=lab)
    line = sorted(front, key=lambda c: c.metrics.model_bytes)
    ax.plot([c.metrics.model_bytes / 1024 for c in line], [c.metrics.accuracy for c in line],
            "k--", lw=1, label="Pareto front (accuracy, size)")
    if result.best is not None:
        ax.scatter([result.best.metrics.model_bytes / 1024], [result.best.metrics.accuracy],
                   s=180, facecolors="none", edgecolors="r", label="chosen")
    if result.constraints.max_bytes:
        ax.axvline(result.constraints.max_bytes / 1024, color="gray", ls=":", label="max_bytes")
    ax.set_xscale("log")
    ax.set_xlabel("model size (KiB, log scale)")
    ax.set_ylabel("validation accuracy")
    ax.set_title(title or f"{result.target}: {result.evaluations}/{result.space_size} evaluated")
    ax.legend(fontsize=7)
    return ax


@dataclass
class TuningRecord:
    """What a tuning run found, how, and everything it measured on the way."""

    target: str
    objective: str
    constraints: object  # module 19's Constraints
    hardware: object  # HardwareProfile of the machine that measured
    baseline: object  # Metrics of the unoptimized model
    candidates: list  # every Candidate measured, in order
    space_size: int  # configurations in the space (what exhaustive search evaluates)
    skipped: dict  # rule -> number of configurations it removed without an evaluation
    best: object  # the chosen Candidate, or None
    model: object  # the optimized model (None when nothing is feasible)
    pipeline: object  # the Pipeline that rebuilds it from the original model (or None)
    closest: list  # when infeasible: the candidates nearest to feasibility
    cache_hits: int = 0
    seconds: float = 0.0
    notes: list = field(default_factory=list)

    @property
    def feasible(self) -> bool:
        return self.best is not None

    @property
    def evaluations(self) -> int:
        return len(self.candidates)

    def pareto(self, latency: bool = True) -> list:
        """The Pareto front of the candidates: module 19 supplies it (its `pareto_front`)."""
        raise NotImplementedError("TuningRecord.pareto is defined by tinytorch.autotuning")

    def diagnose(self) -> list[str]:
        """Per constraint: how often it fails and the best value any candidate reached."""
        return diagnose(self)

    def table(self) -> str:
        """One row per candidate; "vs base" is baseline ms / candidate ms measured in the same
        interleaved rounds (median ± half its interquartile range over the rounds)."""
        return candidate_table(self, self.pareto())

    def report(self) -> str:
        """The choice and its plan, or why nothing fits and the closest candidates; the table."""
        return report_text(self, self.table())

    def plot(self, ax=None, title: str | None = None):
        """Accuracy against model bytes; the Pareto front dashed, the choice circled."""
        return plot_tuning(self, self.pareto(latency=False), ax, title)
