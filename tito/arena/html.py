"""The leaderboard as a web page: ranking tables, a Pareto plot, the submissions, the awards.

`render_page(arena, live=False)` is a self-contained static page (the plot embedded as a
base64 PNG). `live=True` is what `tito competition serve` sends: the plot comes from
/pareto.png and a small script long-polls /api/leaderboard?since=GENERATION, swapping in the
new tables and plot as soon as an evaluation or award changes the database.
"""

from __future__ import annotations

import base64
import html
import json
import math

from tinytorch.competition import CATEGORIES, FORMULAS, pareto_front

from ._plotting import MPL_LOCK, new_figure, png_bytes
from .leaderboard import fmt_score, machine_line

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
h1 { margin-bottom: 0.2em; } .rules { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.unranked td { color: #888; } tr[data-status]:not([data-status="ok"]) td { color: #a33; }
.formula { color: #555; font-size: 0.9em; margin: 0; } .tag { background: #eef; padding: 0 0.3em;
  border-radius: 3px; margin-right: 0.2em; font-size: 0.85em; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(34em, 1fr)); gap: 0 2em; }
td.num { white-space: nowrap; } tr.failed td { color: #a33; font-size: 0.9em; }
#status { color: #777; font-size: 0.85em; }
"""

SCRIPT = """
(function () {
  var body = document.body;
  var img = document.getElementById("pareto");
  function markLoaded() { img.setAttribute("data-loaded", String(img.naturalWidth)); }
  img.addEventListener("load", markLoaded);
  if (img.complete && img.naturalWidth) { markLoaded(); }
  if (body.getAttribute("data-live") !== "1" || location.protocol.indexOf("http") !== 0) { return; }
  var generation = Number(body.getAttribute("data-generation"));
  function poll() {
    fetch("/api/leaderboard?since=" + generation, {cache: "no-store"})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (data && data.generation !== generation) {
          generation = data.generation;
          ["boards", "submissions", "awards"].forEach(function (id) {
            document.getElementById(id).innerHTML = data.html[id];
          });
          img.removeAttribute("data-loaded");
          img.src = "/pareto.png?generation=" + generation;
          body.setAttribute("data-generation", String(generation));
          body.setAttribute("data-updates", String(Number(body.getAttribute("data-updates")) + 1));
          document.getElementById("status").textContent =
            "live: updated to generation " + generation + " at " + new Date().toLocaleTimeString();
        }
      })
      .catch(function () { /* the server is gone or restarting: try again */ })
      .then(function () { setTimeout(poll, 2000); });
  }
  poll();
})();
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def script_json(value) -> str:
    """JSON that is safe inside a <script> element whatever its strings hold: no "<", ">"
    or "&" (so no "</script>", no "<!--"), no U+2028/U+2029; JSON.parse reads it unchanged."""
    text = json.dumps(value, ensure_ascii=False)
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def _tags(tags) -> str:
    return "".join(f'<span class="tag">{_e(t)}</span>' for t in tags)


def boards_html(arena, final: bool = False) -> str:
    board = arena.standings(final)
    parts = ['<div class="grid">']
    for cat in CATEGORIES:
        rows = []
        failed = [s.team for s in board[cat] if s.rank is None and s.entry.status != "ok"]
        for s in board[cat]:
            e = s.entry
            if s.rank is None and e.status != "ok":
                continue
            acc = e.speed_accuracy(final) if cat == "speed" else e.accuracy(final)
            rank = "-" if s.rank is None else str(s.rank)
            cls = "ranked" if s.rank is not None else "unranked"
            detail = _tags(e.tags) if s.rank is not None else _e(s.reason)
            rows.append(
                f'<tr class="{cls}" data-team="{_e(s.team)}" data-rank="{rank}">'
                f'<td class="num">{rank}</td><td>{_e(s.team)}</td>'
                f'<td class="num">{_e(fmt_score(cat, s.score))}</td>'
                f'<td class="num">{"-" if acc is None else f"{acc:.3f}"}</td><td>{detail}</td></tr>'
            )
        if failed:
            rows.append(
                f'<tr class="failed"><td class="num">-</td><td colspan="4">not ranked, evaluation '
                f'failed: {_e(", ".join(failed))} (see the submissions below)</td></tr>'
            )
        body = "".join(rows) or '<tr><td colspan="5">no submissions yet</td></tr>'
        parts.append(
            f'<section><h2>{cat.capitalize()}</h2><p class="formula">{_e(FORMULAS[cat])}</p>'
            f'<table class="ranking" data-category="{cat}"><thead><tr><th>rank</th><th>team</th>'
            f"<th>score</th><th>accuracy</th><th>tags / why not ranked</th></tr></thead>"
            f"<tbody>{body}</tbody></table></section>"
        )
    parts.append("</div>")
    return "".join(parts)


def submissions_html(arena, final: bool = False) -> str:
    rows = []
    for e in reversed(arena.entries()):
        if e.status == "ok":
            acc = e.accuracy(final)
            peak = "-" if e.peak_rss_kb is None else f"{e.peak_rss_kb / 1024:.1f}"
            cells = (
                f'<td class="num">{acc:.3f}</td><td class="num">{e.latency_p50_ms:.4f}</td>'
                f'<td class="num">{e.latency_p90_ms:.4f}</td><td class="num">{e.model_bytes}</td>'
                f'<td class="num">{e.train_seconds:.2f}</td><td class="num">{peak}</td>'
                f"<td>{_tags(e.tags)}</td>"
            )
        else:
            cells = '<td class="num">-</td>' * 6 + f"<td>{_e(e.error)}</td>"
        rows.append(
            f'<tr data-submission="{e.submission_id}" data-status="{_e(e.status)}">'
            f'<td class="num">{e.submission_id}</td><td>{_e(e.team)}</td><td>{_e(e.status)}</td>'
            f"{cells}</tr>"
        )
    body = "".join(rows) or '<tr><td colspan="10">no submissions yet</td></tr>'
    return (
        '<table id="submissions-table"><thead><tr><th>#</th><th>team</th><th>status</th>'
        "<th>accuracy</th><th>p50 ms</th><th>p90 ms</th><th>bytes</th><th>train s</th>"
        "<th>peak MiB</th><th>tags / error</th></tr></thead>"
        f"<tbody>{body}</tbody></table>"
        f'<p class="formula">Measured on {_e(machine_line(arena) or "-")}.</p>'
    )


def awards_html(arena) -> str:
    awards = arena.store.awards()
    if not awards:
        return "<p>No innovation points awarded yet.</p>"
    rows = "".join(
        f'<tr data-team="{_e(a["team"])}"><td>{_e(a["team"])}</td>'
        f'<td class="num">{a["points"]:+g}</td><td>{_e(a["reason"])}</td></tr>'
        for a in awards
    )
    return (
        '<table id="awards-table"><thead><tr><th>team</th><th>points</th><th>reason</th></tr>'
        f"</thead><tbody>{rows}</tbody></table>"
    )


def pareto_png(arena, final: bool = False) -> bytes:
    """Accuracy against p50 latency and against stored bytes; the Pareto front as a line."""
    ok = [e for e in arena.entries() if e.status == "ok" and e.accuracy(final) is not None]
    with MPL_LOCK:
        fig = new_figure((10, 3.8))
        axes = fig.subplots(1, 2)
        for ax, key, label in (
            (axes[0], "latency_p50_ms", "single-stream p50 latency (ms, log)"),
            (axes[1], "model_bytes", "stored weights (bytes, log)"),
        ):
            pts = [(e.accuracy(final), float(getattr(e, key))) for e in ok]
            if pts:
                front = pareto_front(pts)
                ax.scatter([c for _, c in pts], [a for a, _ in pts], color="tab:blue", zorder=3)
                for e, (a, c) in zip(ok, pts):
                    ax.annotate(e.team, (c, a), fontsize=7, xytext=(3, 3),
                                textcoords="offset points")
                fx = [pts[i][1] for i in front]
                fy = [pts[i][0] for i in front]
                ax.step(fx, fy, where="post", color="tab:orange", label="Pareto front", zorder=2)
                ax.scatter(fx, fy, s=90, facecolors="none", edgecolors="tab:orange", zorder=4)
                ax.set_xscale("log")
                lo = min(a for a, _ in pts)
                ax.set_ylim(min(lo, arena.rules.target_accuracy) - 0.02, 1.0)
            ax.axhline(arena.rules.target_accuracy, color="gray", ls="--", lw=1, label="target")
            ax.set_xlabel(label)
            ax.set_ylabel(f"accuracy ({'private' if final else 'public'})")
            ax.legend(loc="lower right", fontsize=8)
            ax.grid(alpha=0.3)
        fig.suptitle("Accuracy against cost: up and to the left is better", fontsize=10)
        fig.tight_layout()
        return png_bytes(fig)


def payload(arena, final: bool = False) -> dict:
    """The JSON the live page polls: generation, rendered fragments and the raw standings."""
    board = arena.standings(final)

    def num(v):
        return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v

    return {
        "generation": arena.store.generation(),
        "final": final,
        "rules": {k: getattr(arena.rules, k) for k in arena.rules.__dataclass_fields__},
        "formulas": FORMULAS,
        "standings": {
            cat: [
                {"team": s.team, "rank": s.rank, "score": num(s.score), "reason": s.reason,
                 "submission_id": s.entry.submission_id, "tags": list(s.entry.tags)}
                for s in board[cat]
            ]
            for cat in CATEGORIES
        },
        "html": {
            "boards": boards_html(arena, final),
            "submissions": submissions_html(arena, final),
            "awards": awards_html(arena),
        },
    }


def render_page(arena, final: bool = False, live: bool = False) -> str:
    data = payload(arena, final)
    if live:
        src = f"/pareto.png?generation={data['generation']}"
    else:
        src = "data:image/png;base64," + base64.b64encode(pareto_png(arena, final)).decode()
    r = arena.rules
    split = "private" if final else "public"
    rules_line = (
        f"Target accuracy {r.target_accuracy:.3f} on the {split} part of the hidden test set"
        f"{'' if final else ' (the final ranking uses the private part)'}; size limit "
        f"{r.size_limit_bytes} bytes; training budget {r.train_budget_seconds:g} s; "
        f"{r.daily_limit} packages per team per day."
    )
    embedded = script_json({"generation": data["generation"], "standings": data["standings"]})
    status = "live: waiting for new evaluations" if live else "static snapshot"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>AutoML Olympics leaderboard</title><style>{CSS}</style></head>
<body data-generation="{data['generation']}" data-updates="0" data-live="{1 if live else 0}">
<h1>AutoML Olympics — {'final' if final else 'public'} leaderboard</h1>
<p class="rules">{_e(rules_line)}</p>
<div id="boards">{data['html']['boards']}</div>
<h2>Accuracy against latency and size</h2>
<img id="pareto" alt="Pareto plot of accuracy against latency and stored size" src="{src}">
<h2>Submissions</h2>
<div id="submissions">{data['html']['submissions']}</div>
<h2>Innovation awards</h2>
<div id="awards">{data['html']['awards']}</div>
<p id="status">{status} (generation {data['generation']})</p>
<script id="leaderboard-data" type="application/json">{embedded}</script>
<script>{SCRIPT}</script>
</body></html>
"""
