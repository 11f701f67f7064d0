"""The leaderboard as text: the terminal table `tito competition leaderboard` prints.

`fmt_score` and `machine_line` are shared with the HTML page (`html.py`).
"""

from __future__ import annotations

from tinytorch.competition import CATEGORIES, FORMULAS, leaderboard


def fmt_score(category: str, score: float | None) -> str:
    if score is None:
        return "-"
    if category == "speed":
        return f"{score:.2f} s"
    if category == "size":
        return f"{score:.3f}"
    if category == "efficiency":
        return f"{score:.3f}"
    return f"{score:g} pts"


def _cut(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def format_leaderboard(arena, final: bool = False, width: int = 100) -> str:
    rules = arena.rules
    entries = arena.entries()
    board = leaderboard(entries, rules, final)
    split = "private" if final else "public"
    teams = sorted({e.team for e in entries})
    lines = [
        f"AutoML Olympics - {'FINAL (private split)' if final else 'public'} leaderboard: "
        f"{len(teams)} teams, {len(entries)} submissions",
        f"target accuracy {rules.target_accuracy:.3f} on the {split} part of the hidden test set"
        + ("" if final else " (the final ranking uses the private part)"),
        f"size limit {rules.size_limit_bytes} bytes, training budget "
        f"{rules.train_budget_seconds:g} s, {rules.daily_limit} packages per team per day",
    ]
    for cat in CATEGORIES:
        lines += ["", f"{cat.upper()}: {FORMULAS[cat]}"]
        lines.append(
            f"  {'rank':>4}  {'team':<20} {'score':>10}  {'accuracy':>8}  tags / why not ranked"
        )
        failed = []
        for s in board[cat]:
            e = s.entry
            if s.rank is None and e.status != "ok":
                failed.append(s.team)
                continue
            acc = e.speed_accuracy(final) if cat == "speed" else e.accuracy(final)
            acc_s = "-" if acc is None else f"{acc:.3f}"
            rank = "-" if s.rank is None else str(s.rank)
            tail = ",".join(e.tags) if s.rank is not None else s.reason
            lines.append(
                f"  {rank:>4}  {_cut(s.team, 20):<20} {fmt_score(cat, s.score):>10}  {acc_s:>8}  "
                + _cut(tail, max(30, width - 52))
            )
        if failed:
            lines.append(f"{'-':>6}  not ranked, evaluation failed: {', '.join(failed)}")
        if not board[cat]:
            lines.append("  (no submissions yet)")
    lines += ["", "SUBMISSIONS (oldest first; accuracy on the " + split + " part)"]
    lines.append(
        f"  {'#':>3}  {'team':<20} {'status':<15} {'acc':>6} {'p50 ms':>8} {'p90 ms':>8} "
        f"{'bytes':>7} {'train s':>7} {'peak MiB':>8}  tags"
    )
    for e in entries:
        if e.status == "ok":
            acc = e.accuracy(final)
            peak = "-" if e.peak_rss_kb is None else f"{e.peak_rss_kb / 1024:.1f}"
            cols = (
                f"{acc:>6.3f} {e.latency_p50_ms:>8.4f} {e.latency_p90_ms:>8.4f} "
                f"{e.model_bytes:>7} {e.train_seconds:>7.2f} {peak:>8}  {','.join(e.tags)}"
            )
        else:
            cols = f"{'-':>6} {'-':>8} {'-':>8} {'-':>7} {'-':>7} {'-':>8}"
        lines.append(f"  {e.submission_id:>3}  {_cut(e.team, 20):<20} {e.status:<15} {cols}")
        if e.status != "ok":
            lines.append(f"{'':>7}why: {_cut(e.error, 300)}")
    machine = machine_line(arena)
    if machine:
        lines += ["", f"measured on {machine}"]
    awards = arena.store.awards()
    if awards:
        lines += ["", "INNOVATION AWARDS"]
        for a in awards:
            lines.append(f"  {a['team']:<20} {a['points']:+g} pts  {_cut(a['reason'], width - 36)}")
    return "\n".join(lines)


def machine_line(arena) -> str:
    """The standardized hardware of the latest evaluation, in one line ('' if none yet)."""
    rows = arena.store.rows()
    if not rows:
        return ""
    m = rows[-1]["machine"]
    return (
        f"{m.get('cpu_model')} ({m.get('logical_cpus')} logical CPUs), every run pinned to CPU "
        f"{m.get('pinned_cpu')} with {m.get('blas_threads')} BLAS thread; Python "
        f"{m.get('python')}, numpy {m.get('numpy')}"
    )
