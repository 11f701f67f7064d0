"""Plausible wrong versions of every graded function of module 20 (tests/test_wrong_versions.py).

Each replaces a whole solution cell; most are written as the reference cell with only its
solution region(s) changed (``_cell``), so the given code around them stays as the student has it.
"""

import re

from wrong_versions.runner import WrongVersion, module_cells

_REGION = re.compile(r"(?m)^([ \t]*)### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION\n?", re.S)
_CELLS = {c.grade_id: c.body for c in module_cells("20_competition") if c.is_solution}


def _cell(exercise: str, *bodies: str | None) -> str:
    """The reference solution cell of ``exercise`` with its solution regions replaced by
    ``bodies`` in order (None keeps that region's reference; a body is indented to fit)."""
    source = _CELLS[exercise]
    regions = list(_REGION.finditer(source))
    if len(bodies) != len(regions):
        raise ValueError(f"{exercise} has {len(regions)} solution regions, got {len(bodies)}")
    out, last = [], 0
    for match, body in zip(regions, bodies, strict=True):
        out.append(source[last : match.start()])
        if body is None:
            out.append(match.group(0))
        else:
            indent = match.group(1)
            lines = body.strip("\n").split("\n")
            out.append("\n".join(indent + ln if ln.strip() else "" for ln in lines) + "\n")
        last = match.end()
    out.append(source[last:])
    return "".join(out)


def _ref_region(exercise: str, index: int = 0) -> str:
    """The reference body of solution region ``index`` (dedented), to edit a line of it."""
    match = list(_REGION.finditer(_CELLS[exercise]))[index]
    indent = match.group(1)
    lines = match.group(0).rstrip("\n").split("\n")[1:-1]  # between the two delimiters
    return "\n".join(ln[len(indent):] for ln in lines)


def _edit(exercise: str, old: str, new: str, index: int = 0, regions: int = 1) -> str:
    """The reference cell with ``old`` replaced by ``new`` inside solution region ``index``."""
    body = _ref_region(exercise, index)
    if old not in body:
        raise ValueError(f"{exercise}: {old!r} is not in the reference")
    bodies = [None] * regions
    bodies[index] = body.replace(old, new)
    return _cell(exercise, *bodies)


def _entry(body: str) -> str:
    return f'ENTRY_SOURCE = """\n{body.strip()}\n"""\n'


_ENTRY_HEAD = """
import numpy as np

from tinytorch.compression import structured_prune
from tinytorch.core.data import DataLoader, TensorDataset
from tinytorch.core.losses import cross_entropy
from tinytorch.core.tensor import Tensor
"""

_FINE_TUNE = """
    def optimize(self):
        self.model = structured_prune(self.model, 1 - self.hidden / 256)
        x, y = self.data
        optimizer = self.build_optimizer(self.model)
        self.model.train()
        for epoch in range(self.fine_tune_epochs):
            loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, seed=epoch)
            for xb, yb in loader:
                loss = cross_entropy(self.model(Tensor(xb)), yb)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        self.model.eval()
"""

_META = """
    team = "my-team"
    tags = ("pruning",)
    description = "An entry."
"""

WRONG = [
    # ---- percentile
    WrongVersion("percentile", "linear interpolation (np.percentile)", _cell("percentile", """
return float(np.percentile(values, q))
""")),
    WrongVersion("percentile", "floor rank, one too high", _cell("percentile", """
ordered = sorted(values)
return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]
""")),
    WrongVersion("percentile", "forgets to sort", _cell("percentile", """
if q == 0:
    return min(values)
return values[math.ceil(q / 100 * len(values)) - 1]
""")),
    WrongVersion("percentile", "p0 wraps around to the maximum", _edit(
        "percentile", "if q == 0:\n    return ordered[0]\n", "")),
    WrongVersion("percentile", "rounds the rank", _edit(
        "percentile", "rank = math.ceil(q / 100 * len(ordered))",
        "rank = max(1, round(q / 100 * len(ordered)))")),
    # ---- check_scores
    WrongVersion("check_scores", "checks the dtype before the shape", _cell("check_scores", """
if not isinstance(out, np.ndarray) or out.dtype.kind != "f":
    raise PredictionError("wrong_dtype", f"predict returned {type(out).__name__}{where}")
if out.shape != (rows, num_classes):
    raise PredictionError(
        "wrong_shape", f"predict returned {out.shape}{where}; expected ({rows}, {num_classes})"
    )
if not np.all(np.isfinite(out)):
    raise PredictionError("nan", f"predict returned non-finite scores{where}")
return out
""")),
    WrongVersion("check_scores", "isnan misses inf", _edit(
        "check_scores", "bad = int(np.size(out) - np.count_nonzero(np.isfinite(out)))",
        "bad = int(np.count_nonzero(np.isnan(out)))")),
    WrongVersion("check_scores", "float32 only", _edit(
        "check_scores", 'if out.dtype.kind != "f":', "if out.dtype != np.float32:")),
    WrongVersion("check_scores", "no isinstance check", _edit(
        "check_scores", "if not isinstance(out, np.ndarray):", "if False:")),
    WrongVersion("check_scores", "messages without the query", _edit(
        "check_scores", "{where}", "")),
    # ---- single_stream
    WrongVersion("single_stream", "times the warm-up too", _edit(
        "single_stream", "for i in range(warmup):\n    j = i % n\n    check_scores("
        "predict(inputs[j : j + 1]), 1, num_classes, query=j)\n",
        "warm = []\nfor i in range(warmup):\n    j = i % n\n    t0 = clock()\n"
        "    check_scores(predict(inputs[j : j + 1]), 1, num_classes, query=j)\n"
        "    warm.append((clock() - t0) * 1e3)\n").replace(
        "        times_ms = []\n", "        times_ms = warm if r == 0 else []\n")),
    WrongVersion("single_stream", "mean of the passes", _edit(
        "single_stream", "p50_ms=statistics.median(p50s),\n    p90_ms=statistics.median(p90s),",
        "p50_ms=statistics.mean(p50s),\n    p90_ms=statistics.mean(p90s),")),
    WrongVersion("single_stream", "percentiles of all passes pooled", _cell("single_stream", """
for i in range(warmup):
    j = i % n
    check_scores(predict(inputs[j : j + 1]), 1, num_classes, query=j)
pooled, p50s, p90s, first = [], [], [], None
for r in range(repeats):
    times_ms, outs = [], []
    for i in range(n):
        start = clock()
        out = predict(inputs[i : i + 1])
        times_ms.append((clock() - start) * 1e3)
        outs.append(check_scores(out, 1, num_classes, query=i))
    if r == 0:
        first = np.concatenate(outs, axis=0)
    pooled += times_ms
    p50s.append(percentile(times_ms, 50))
    p90s.append(percentile(times_ms, 90))
return LatencyResult(percentile(pooled, 50), percentile(pooled, 90), p50s, p90s, n, warmup, first)
""")),
    WrongVersion("single_stream", "seconds, not milliseconds", _edit(
        "single_stream", "times_ms.append((clock() - start) * 1e3)",
        "times_ms.append(clock() - start)")),
    WrongVersion("single_stream", "one batch per pass", _edit(
        "single_stream",
        "    for i in range(n):\n        x = inputs[i : i + 1]  # (1, features): one query, "
        "alone\n        start = clock()\n        out = predict(x)\n"
        "        times_ms.append((clock() - start) * 1e3)\n"
        "        outs.append(check_scores(out, 1, num_classes, query=i))\n",
        "    start = clock()\n    out = check_scores(predict(inputs), n, num_classes)\n"
        "    times_ms = [(clock() - start) * 1e3 / n] * n\n"
        "    outs = [out[i : i + 1] for i in range(n)]\n")),
    WrongVersion("single_stream", "checks only the first pass", _edit(
        "single_stream", "outs.append(check_scores(out, 1, num_classes, query=i))",
        "outs.append(check_scores(out, 1, num_classes, query=i) if r == 0 else out)")),
    WrongVersion("single_stream", "outputs of the last pass", _edit(
        "single_stream", "    if r == 0:\n        first = np.concatenate(outs, axis=0)",
        "    first = np.concatenate(outs, axis=0)")),
    # ---- stored_bytes
    WrongVersion("stored_bytes", "sum of nbytes (no headers)", _cell("stored_bytes", """
return int(sum(np.asarray(v).nbytes for v in arrays.values()))
""")),
    WrongVersion("stored_bytes", "np.savez_compressed", _edit(
        "stored_bytes", "np.savez(buffer,", "np.savez_compressed(buffer,")),
    WrongVersion("stored_bytes", "pickled size", _cell("stored_bytes", """
import pickle

return len(pickle.dumps({k: np.asarray(v) for k, v in arrays.items()}))
""")),
    # ---- public_private_split / split_accuracies
    WrongVersion("public_private", "first rows, no shuffle", _cell("public_private", """
public = np.arange(n_public, dtype=np.int64)
private = np.arange(n_public, n, dtype=np.int64)
return public, private
""", None)),
    WrongVersion("public_private", "unseeded shuffle", _edit(
        "public_private", "np.random.default_rng(seed).permutation(n)", "np.random.permutation(n)",
        regions=2)),
    WrongVersion("public_private", "unsorted indices", _edit(
        "public_private", "public = np.sort(order[:n_public]).astype(np.int64)",
        "public = order[:n_public].astype(np.int64)", regions=2)),
    WrongVersion("public_private", "accuracy of the whole set for both parts", _cell(
        "public_private", None, """
acc = float((pred_labels == labels).mean())
return acc, acc
""")),
    WrongVersion("public_private", "public and private swapped", _edit(
        "public_private", "return public, private", "return private, public", regions=2)),
    # ---- CompetitionSubmission.train
    WrongVersion("submission_train", "budget checked only after each epoch", _edit(
        "submission_train", "        if time.perf_counter() >= deadline:\n"
        "            out_of_time = True\n            break\n", "")),
    WrongVersion("submission_train", "no manual_seed", _edit(
        "submission_train", "manual_seed(self.seed)\n", "")),
    WrongVersion("submission_train", "autotune after build_model", _edit(
        "submission_train",
        "tuner = self.build_autotuner()\nif tuner is not None:\n    self.tuning = self.autotune(\n"
        "        tuner, x_tr, y_tr, x_val, y_val, deadline - time.perf_counter()\n    )\n"
        "self.model = self.build_model()\n",
        "self.model = self.build_model()\ntuner = self.build_autotuner()\nif tuner is not None:\n"
        "    self.tuning = self.autotune(\n"
        "        tuner, x_tr, y_tr, x_val, y_val, deadline - time.perf_counter()\n    )\n")),
    WrongVersion("submission_train", "trains on the held-out part too", _edit(
        "submission_train", "TensorDataset(x_tr, y_tr)", "TensorDataset(x, y)")),
    WrongVersion("submission_train", "ignores stop_accuracy", _edit(
        "submission_train",
        "if self.stop_accuracy is not None and acc >= self.stop_accuracy:",
        "if False:")),
    # ---- category_score
    WrongVersion("category_score", "strictly above the target", _edit(
        "category_score", "if acc < target:\n    return None, f\"accuracy",
        "if acc <= target:\n    return None, f\"accuracy")),
    WrongVersion("category_score", "speed uses the submitted model's accuracy", _edit(
        "category_score", "acc = entry.speed_accuracy(final)", "acc = entry.accuracy(final)")),
    WrongVersion("category_score", "final ignored (always public)", _edit(
        "category_score", "acc = entry.accuracy(final)", "acc = entry.acc_public")),
    WrongVersion("category_score", "bytes instead of KiB", _edit(
        "category_score", "entry.model_bytes / 1024", "entry.model_bytes")),
    WrongVersion("category_score", "size limit exclusive", _edit(
        "category_score", "entry.model_bytes > rules.size_limit_bytes",
        "entry.model_bytes >= rules.size_limit_bytes")),
    WrongVersion("category_score", "zero innovation points count", _edit(
        "category_score", "if entry.innovation_points <= 0:", "if entry.innovation_points < 0:")),
    # ---- rank_category
    WrongVersion("rank_category", "ranks submissions, not teams", _cell("rank_category", """
scored = []
for entry in entries:
    score, _ = category_score(entry, category, rules, final)
    if score is not None:
        scored.append((_sort_key(category, score, entry), score, entry))
scored.sort(key=lambda item: item[0])
out = [Standing(e.team, i + 1, s, "", e) for i, (_, s, e) in enumerate(scored)]
ranked = {s.team for s in out}
for entry in entries:
    if entry.team not in ranked:
        out.append(Standing(entry.team, None, None,
                            category_score(entry, category, rules, final)[1], entry))
return out
""")),
    WrongVersion("rank_category", "ties to the later submission", _edit(
        "rank_category", "if entry.team not in best or key < best[entry.team][0]:",
        "key = (*key[:-1], -entry.submission_id)\n    "
        "if entry.team not in best or key < best[entry.team][0]:")),
    WrongVersion("rank_category", "size ties ignore the bytes", _edit(
        "rank_category", "key = _sort_key(category, score, entry)",
        "key = (-score if category != 'speed' else score, entry.submission_id)")),
    WrongVersion("rank_category", "unranked reason from the first submission", _edit(
        "rank_category",
        "if entry.team not in latest or entry.submission_id > latest[entry.team].submission_id:",
        "if entry.team not in latest:")),
    WrongVersion("rank_category", "unranked teams dropped", _edit(
        "rank_category", "for entry in rest:\n", "for entry in rest[:0]:\n")),
    # ---- pareto_front
    WrongVersion("pareto_front", "dominance must be strict in both", _edit(
        "pareto_front",
        "acc_j >= acc_i and cost_j <= cost_i and (acc_j > acc_i or cost_j < cost_i)",
        "acc_j > acc_i and cost_j < cost_i")),
    WrongVersion("pareto_front", "an equal point dominates", _cell("pareto_front", """
front = []
for i, (acc_i, cost_i) in enumerate(pts):
    dominated = any(
        j != i and acc_j >= acc_i and cost_j <= cost_i for j, (acc_j, cost_j) in enumerate(pts)
    )
    if not dominated:
        front.append(i)
return sorted(front, key=lambda i: (pts[i][1], i))
""")),
    WrongVersion("pareto_front", "in index order", _edit(
        "pareto_front", "return sorted(front, key=lambda i: (pts[i][1], i))", "return front")),
    # ---- compare_to_baseline
    WrongVersion("compare_to_baseline", "ratios inverted (entry / baseline)", _edit(
        "compare_to_baseline", "else base / new", "else new / base")),
    WrongVersion("compare_to_baseline", "accuracy change as a fraction", _edit(
        "compare_to_baseline", "else 100.0 * (acc - base_acc)", "else acc - base_acc")),
    WrongVersion("compare_to_baseline", "final ignored", _edit(
        "compare_to_baseline", "acc, base_acc = entry.accuracy(final), baseline.accuracy(final)",
        "acc, base_acc = entry.acc_public, baseline.acc_public")),
    # ---- check_metadata
    WrongVersion("check_metadata", "re.match with $ (a trailing newline passes)", _edit(
        "check_metadata", "TEAM_PATTERN.fullmatch(team)",
        "re.match(TEAM_PATTERN.pattern + '$', team)")),
    WrongVersion("check_metadata", "repeated tags allowed", _edit(
        "check_metadata", "elif len(set(tags)) != len(tags):", "elif False:")),
    WrongVersion("check_metadata", "blank description accepted", _edit(
        "check_metadata", "isinstance(description, str) and description.strip()",
        "isinstance(description, str) and description")),
    WrongVersion("check_metadata", "unknown keys ignored", _edit(
        "check_metadata", "    if key not in REQUIRED_KEYS + OPTIONAL_KEYS:",
        "    if False:")),
    WrongVersion("check_metadata", "entry not checked", _edit(
        "check_metadata", 'if "entry" in meta and not', 'if False and not')),
    # ---- the student's own entry
    WrongVersion("my_entry", "the baseline unchanged under another name", _entry(
        _ENTRY_HEAD + "\n\nclass Same(PretrainedBaseline):" + _META
        + '    category = "efficiency"\n')),
    WrongVersion("my_entry", "pruned but stored as float32: over the size limit", _entry(
        _ENTRY_HEAD + "\n\nclass Big(PretrainedBaseline):" + _META
        + '    category = "size"\n    hidden = 24\n    fine_tune_epochs = 6\n' + _FINE_TUNE)),
    WrongVersion("my_entry", "pruned without fine-tuning", _entry(
        _ENTRY_HEAD + "\n\nclass Broken(PretrainedBaseline):" + _META
        + '    category = "size"\n    hidden = 16\n    fine_tune_epochs = 0\n' + _FINE_TUNE
        + "\n    def state(self):\n"
        "        return {k: v.astype(np.float16) for k, v in super().state().items()}\n\n"
        "    def load_state(self, arrays):\n"
        "        super().load_state({k: np.asarray(v, np.float32) for k, v in arrays.items()})\n")),
    WrongVersion("my_entry", "competes in speed", _entry(
        _ENTRY_HEAD + "\n\nclass Fast(PretrainedBaseline):" + _META + '    category = "speed"\n')),
    WrongVersion("my_entry", "load_state forgets the smaller architecture", _entry(
        _ENTRY_HEAD + "\n\nclass Lost(PretrainedBaseline):" + _META
        + '    category = "size"\n    fine_tune_epochs = 6\n'
        + _FINE_TUNE.replace("1 - self.hidden / 256", "1 - 24 / 256"))),
]
