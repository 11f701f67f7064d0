"""Per-evaluation outputs: Gradescope's results.json and a performance report.

The report (Markdown + a PNG) compares the submission with the baseline team's best counting
submission: latency, size and training-time ratios, the accuracy change, the category scores,
the techniques it declared and the machine it ran on. Failed submissions get the reason and
the first lines they printed. Public numbers only, unless `final=True`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from tinytorch.competition import (
    CATEGORIES,
    FORMULAS,
    CompetitionRules,
    Entry,
    category_score,
    compare_to_baseline,
    plot_comparison,
    rank_category,
)

from .store import entry_from_row


def write_results_json(arena, sid: int) -> Path:
    path = arena.root / "results" / f"{sid}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_json(results_json_payload(arena, sid)) + "\n", encoding="utf-8")
    return path


def baseline_entry(arena, final: bool = False):
    """The baseline team's best submission (by efficiency, else its latest ok one), or None."""
    entries = [e for e in arena.entries() if e.team == arena.baseline_team and e.status == "ok"]
    if not entries:
        return None
    ranked = [s for s in rank_category(entries, "efficiency", arena.rules, final) if s.rank]
    return ranked[0].entry if ranked else entries[-1]


def _measurement_lines(m: dict) -> list[str]:
    """How the latency was measured (by the harness, across the boundary), as table rows."""
    raw, null = m.get("latency_raw") or {}, m.get("latency_null") or {}
    if not raw:
        return []
    lines = [
        f"| harness-timed request -> answer p50 / p90 (raw) | {raw['p50_ms']:.4f} / "
        f"{raw['p90_ms']:.4f} ms |",
    ]
    if null:
        lines.append(
            f"| null model p50 (the boundary's own cost, subtracted above) | "
            f"{null['p50_ms']:.4f} ms |"
        )
    if m.get("first_pass_p50_ms") is not None:
        lines.append(
            f"| first pass p50 (each hidden input once; no answer can be cached) | "
            f"{m['first_pass_p50_ms']:.4f} ms |"
        )
    if m.get("consistency") is not None:
        lines.append(
            f"| answers to perturbed repeats (noise std {m.get('perturbation')}) agreeing with "
            f"the first pass | {m['consistency']:.3f} |"
        )
    return lines


def report_markdown(arena, sid: int, final: bool = False) -> tuple[str, dict | None]:
    row = arena.store.row(sid)
    points = arena.store.innovation_points().get(row["team"], 0.0)
    entry = entry_from_row(row, points)
    split = "private" if final else "public"
    lines = [
        f"# Submission #{sid}: {entry.team}",
        "",
        f"- package `{row['package_hash'][:16]}`, submitted {row['submitted_at']} from "
        f"`{Path(row['source']).name}`",
        f"- declared category: {row['category'] or '-'}; technique tags: "
        f"{', '.join(entry.tags) or '-'}",
        f"- description: {row['description'] or '-'}",
        f"- status: **{entry.status}**" + (f" — {entry.error}" if entry.error else ""),
        "",
    ]
    comparison = None
    if entry.status == "ok":
        acc = entry.accuracy(final)
        speed_acc = entry.speed_accuracy(final)
        lines += [
            f"## Measurements ({split} split)",
            "",
            "| metric | value |",
            "|---|---|",
            f"| accuracy ({split}) | {acc:.4f} |",
            f"| latency p50 / p90 (single-stream, timed by the harness minus the null model, "
            f"median of {len(row['latency_passes'])} passes) "
            f"| {entry.latency_p50_ms:.4f} / {entry.latency_p90_ms:.4f} ms |",
            f"| per-pass p50 (ms) | {', '.join(f'{v:.4f}' for v in row['latency_passes'])} |",
            *_measurement_lines(row.get("measurement") or {}),
            f"| model size (stored weights) | {entry.model_bytes} bytes |",
            f"| train() from scratch | {entry.train_seconds:.3f} s, reaching accuracy "
            f"{speed_acc:.4f} |",
            f"| peak memory of the inference run | {row['peak_rss_kb']} KiB (interpreter + numpy "
            f"alone: {row['base_rss_kb']} KiB) |",
            "",
            "## Category scores",
            "",
            "| category | score | counts? | formula |",
            "|---|---|---|---|",
        ]
        for cat in CATEGORIES:
            score, why = category_score(entry, cat, arena.rules, final)
            shown = "-" if score is None else f"{score:.4g}"
            lines.append(f"| {cat} | {shown} | {'yes' if score is not None else why} | "
                         f"{FORMULAS[cat]} |")
        base = baseline_entry(arena, final)
        lines += ["", f"## Against the baseline ({arena.baseline_team})", ""]
        if base is None:
            lines.append("No baseline submission has been evaluated yet.")
        else:
            comparison = compare_to_baseline(entry, base, final)

            def show(v, unit="x"):
                return "-" if v is None else f"{v:.2f}{unit}"

            lines += [
                f"Compared with submission #{base.submission_id} (higher is better):",
                "",
                f"- latency speed-up: {show(comparison['latency_speedup'])}",
                f"- size reduction: {show(comparison['size_reduction'])}",
                f"- training speed-up: {show(comparison['train_speedup'])}",
                f"- accuracy change: {show(comparison['accuracy_delta_points'], ' points')}",
                "",
                f"![comparison with the baseline]({sid}-{entry.team}.png)",
            ]
    elif row["output_head"]:
        lines += ["## First lines it printed", "", "```", row["output_head"][:1500], "```"]
    m = row["machine"]
    lines += [
        "",
        "## Machine",
        "",
        f"{m.get('cpu_model')}, {m.get('logical_cpus')} logical CPUs, pinned to CPU "
        f"{m.get('pinned_cpu')}, {m.get('blas_threads')} BLAS thread; {m.get('platform')}; "
        f"Python {m.get('python')}, numpy {m.get('numpy')}. Evaluated in "
        f"{row['harness_seconds']:.2f} s at {row['evaluated_at']}.",
    ]
    return "\n".join(lines) + "\n", comparison


def write_report(arena, sid: int, final: bool = False) -> Path:
    from ._plotting import MPL_LOCK, new_figure

    row = arena.store.row(sid)
    path = arena.report_path(sid, row["team"])
    path.parent.mkdir(parents=True, exist_ok=True)
    text, comparison = report_markdown(arena, sid, final)
    if comparison is not None:
        with MPL_LOCK:
            fig = new_figure((5, 3.2))
            ax = fig.subplots()
            plot_comparison(comparison, ax=ax, title=f"{row['team']} vs {arena.baseline_team}")
            fig.tight_layout()
            fig.savefig(path.with_suffix(".png"), dpi=90)
    path.write_text(text, encoding="utf-8")
    return path


def scores_for(entry: Entry, rules: CompetitionRules, final: bool = False) -> dict:
    """Every category's score for one entry (None where it does not count)."""
    out = {}
    for cat in CATEGORIES:
        score, _ = category_score(entry, cat, rules, final)
        out[cat] = None if score is None or not math.isfinite(score) else score
    return out


def results_json_payload(arena, sid: int) -> dict:
    """Gradescope's results.json for one evaluation (public numbers only)."""
    row = arena.store.row(sid)
    entry = entry_from_row(row, arena.store.innovation_points().get(row["team"], 0.0))
    rules = arena.rules
    ok = entry.status == "ok"
    malformed = entry.status == "malformed"
    reached = ok and entry.acc_public is not None and entry.acc_public >= rules.target_accuracy
    tests = [
        {
            "name": "package is well-formed",
            "score": 0.0 if malformed else 1.0,
            "max_score": 1.0,
            "status": "failed" if malformed else "passed",
            "output": entry.error if malformed else "submission.yaml, submission.py, weights/",
        },
        {
            "name": "runs within the arena's limits and returns valid scores",
            "score": 1.0 if ok else 0.0,
            "max_score": 1.0,
            "status": "passed" if ok else "failed",
            "output": "" if ok else ("not run" if malformed else f"{entry.status}: {entry.error}"),
        },
        {
            "name": f"public accuracy >= target {rules.target_accuracy:.3f}",
            "score": 1.0 if reached else 0.0,
            "max_score": 1.0,
            "status": "passed" if reached else "failed",
            "output": f"public accuracy {entry.acc_public:.4f}" if ok else "not scored",
        },
    ]
    board = [{"name": "Status", "value": entry.status}]
    if ok:
        scores = scores_for(entry, rules)
        board += [
            {"name": "Public accuracy", "value": round(entry.acc_public, 4)},
            {"name": "Latency p50 (ms)", "value": round(entry.latency_p50_ms, 5), "order": "asc"},
            {"name": "Latency p90 (ms)", "value": round(entry.latency_p90_ms, 5), "order": "asc"},
            {"name": "Model size (bytes)", "value": int(entry.model_bytes), "order": "asc"},
            {"name": "Train time (s)", "value": round(entry.train_seconds, 3), "order": "asc"},
            {
                "name": "Efficiency",
                "value": round(scores["efficiency"], 4) if scores["efficiency"] else 0,
            },
        ]
    board.append({"name": "Tags", "value": ",".join(entry.tags)})
    return {
        "score": sum(t["score"] for t in tests),
        "execution_time": round(float(row["harness_seconds"]), 3),
        "output": f"{entry.team} #{sid}: {entry.status}"
        + (f" ({entry.error})" if entry.error else ""),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "leaderboard": board,
        "extra_data": {"machine": row["machine"], "package_hash": row["package_hash"]},
    }


def to_json(payload: dict) -> str:
    return json.dumps(payload, indent=2, sort_keys=False, allow_nan=False)
