"""Module 20: the competition rules (tinytorch.competition) and the arena (tinytorch.arena: local
evaluation; tito.arena: the course staff's leaderboard).

The arena tests run the real harness on the bundled samples (competitions/samples): every good
one ranked by the written formulas, every broken one failing with its own reason, the database
healthy and unchanged by a second evaluation. The browser tests drive Debian's chromium
(headless, --dump-dom) and skip with instructions where it is not installed.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch.competition import (
    CATEGORIES,
    ERROR_KINDS,
    FORMULAS,
    CompetitionRules,
    CompetitionSubmission,
    Entry,
    PredictionError,
    category_score,
    check_metadata,
    check_scores,
    compare_to_baseline,
    leaderboard,
    pareto_front,
    percentile,
    public_private_split,
    rank_category,
    single_stream,
    split_accuracies,
    stored_bytes,
)
from tinytorch.datasets import load_digits
from tito.arena import (
    Arena,
    ArenaLimits,
    LeaderboardStore,
    SubmissionLimitError,
    build_package,
    build_samples,
    expected_outcomes,
    read_package,
    sample_dirs,
)
from tito.arena.demo import check_outcome
from tito.arena.html import payload

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NEEDS_CHROMIUM = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed: run `apt-get update && apt-get install -y chromium "
    "chromium-driver` (as root; .ci/run does this) to run the headless-browser tests",
)
HANG_SECONDS = 3.0  # the wall-time limit of the inference run in these tests


# ------------------------------------------------------------------ the student-built parts
@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=60),
    st.floats(0.001, 100),
)
def test_percentile_is_nearest_rank(values, q):
    want = float(np.percentile(np.array(values), q, method="inverted_cdf"))
    assert percentile(values, q) == want
    assert percentile(values, 0) == min(values) and percentile(values, 100) == max(values)


def test_single_stream_times_one_query_at_a_time_with_a_fake_clock():
    t = {"now": 0.0, "calls": 0}

    def predict(x):
        assert x.shape == (1, 3), "single-stream sends one input at a time"
        t["calls"] += 1
        t["now"] += 0.001 * t["calls"]  # call k takes k ms
        return np.zeros((1, 10), np.float32)

    res = single_stream(predict, np.zeros((4, 3)), warmup=2, repeats=3, clock=lambda: t["now"])
    assert t["calls"] == 2 + 3 * 4
    assert np.allclose(res.repeats_p50_ms, [4, 8, 12])
    assert np.allclose(res.repeats_p90_ms, [6, 10, 14])
    assert np.isclose(res.p50_ms, 8) and np.isclose(res.p90_ms, 10) and np.isclose(res.spread, 3)


@pytest.mark.parametrize(
    "out, kind",
    [
        (np.zeros((1, 9), np.float32), "wrong_shape"),
        (np.zeros((1, 10), np.int64), "wrong_dtype"),
        ([[0.0] * 10], "wrong_dtype"),
        (np.array([[np.nan] + [0.0] * 9]), "nan"),
        (np.array([[np.inf] + [0.0] * 9]), "nan"),
    ],
)
def test_check_scores_names_each_problem(out, kind):
    with pytest.raises(PredictionError) as info:
        check_scores(out, 1, query=5)
    assert info.value.kind == kind and info.value.kind in ERROR_KINDS
    assert "query 5" in str(info.value)


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 500), st.floats(0.05, 0.95), st.integers(0, 2**31))
def test_public_private_split_partitions(n, frac, seed):
    if not 1 <= round(n * frac) <= n - 1:
        with pytest.raises(ValueError):
            public_private_split(n, frac, seed)
        return
    pub, priv = public_private_split(n, frac, seed)
    assert len(pub) == round(n * frac)
    assert np.array_equal(np.sort(np.concatenate([pub, priv])), np.arange(n))
    assert np.array_equal(pub, public_private_split(n, frac, seed)[0])
    labels = np.arange(n) % 7
    assert split_accuracies(labels, labels, pub, priv) == (1.0, 1.0)


def test_stored_bytes_is_the_file_size(tmp_path):
    arrays = {"w": np.ones((64, 64), np.float32), "b": np.arange(10, dtype=np.int8)}
    np.savez(tmp_path / "w.npz", **arrays)
    assert stored_bytes(arrays) == (tmp_path / "w.npz").stat().st_size


entries_strategy = st.lists(
    st.builds(
        lambda team, status, acc, sacc, secs, p50, size, pts: Entry(
            team=team,
            status=status,
            acc_public=acc,
            acc_private=acc,
            speed_acc_public=sacc,
            speed_acc_private=sacc,
            train_seconds=secs,
            latency_p50_ms=p50,
            latency_p90_ms=p50 * 1.5,
            model_bytes=size,
            innovation_points=pts,
        ),
        st.sampled_from(["a", "b", "c", "d", "e"]),
        st.sampled_from(["ok", "ok", "ok", "crash"]),
        st.sampled_from([0.5, 0.89, 0.9, 0.93, 0.97]),
        st.sampled_from([0.8, 0.9, 0.95]),
        st.sampled_from([0.1, 0.5, 2.0, 30.0]),
        st.sampled_from([0.01, 0.02, 0.05]),
        st.sampled_from([1000, 8192, 9000, 20000]),
        st.sampled_from([0.0, 1.0, 3.0]),
    ),
    max_size=12,
)


@settings(max_examples=80, deadline=None)
@given(entries_strategy, st.sampled_from(CATEGORIES), st.booleans())
def test_rank_category_follows_the_formula(entries, category, final):
    for i, e in enumerate(entries):
        e.submission_id = i + 1
    rules = CompetitionRules()
    standings = rank_category(entries, category, rules, final)
    assert sorted(s.team for s in standings) == sorted({e.team for e in entries})
    ranked = [s for s in standings if s.rank is not None]
    assert [s.rank for s in ranked] == list(range(1, len(ranked) + 1))
    assert all(s.rank is None for s in standings[len(ranked):]), "ranked teams come first"
    for s in standings:
        scored = [
            (category_score(e, category, rules, final)[0], e)
            for e in entries
            if e.team == s.team and category_score(e, category, rules, final)[0] is not None
        ]
        if s.rank is None:
            assert not scored and s.reason
            continue
        best = min(sc for sc, _ in scored) if category == "speed" else max(sc for sc, _ in scored)
        assert s.score == best
    scores = [s.score for s in ranked]
    if category == "speed":
        assert scores == sorted(scores)
    else:
        assert scores == sorted(scores, reverse=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=15))
def test_pareto_front_matches_brute_force(raw):
    pts = [(a / 5, float(c)) for a, c in raw]
    front = pareto_front(pts)
    for i, (a, c) in enumerate(pts):
        dominated = any(b >= a and d <= c and (b > a or d < c) for b, d in pts)
        assert (i in front) != dominated


def test_formulas_are_written_down_in_the_readme():
    readme = (ROOT / "modules" / "20_competition" / "README.md").read_text()
    assert set(FORMULAS) == set(CATEGORIES)
    for cat, text in FORMULAS.items():
        assert text in " ".join(readme.split()), f"README.md must state the {cat} formula: {text}"


def test_metadata_rules():
    good = {"team": "t1", "category": "size", "tags": ["int8"], "description": "d"}
    assert check_metadata(good) == []
    assert len(check_metadata({})) == 4
    assert check_metadata({**good, "tags": ["Bad Tag"]})


@pytest.mark.parametrize(
    "change",
    [
        {"team": "baseline\n"},  # re.match with `$` accepts a trailing newline
        {"team": "baseline!"},
        {"tags": ["int8\n"]},
        {"tags": ["int8", "pruning\n"]},
    ],
)
def test_names_must_match_in_full(change, tmp_path):
    good = {"team": "baseline", "category": "size", "tags": ["int8"], "description": "d"}
    meta = {**good, **change}
    problems = check_metadata(meta)
    assert problems and any(repr(v) in " ".join(problems) for v in
                            [meta["team"], *meta["tags"]]), problems
    # the arena names a package by its team: a name that does not match in full is not used
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "submission.yaml").write_text(yaml.safe_dump(meta))
    pkg = read_package(folder, tmp_path / "w")
    assert pkg.team == meta["team"] if "team" not in change else pkg.team == "pkg"
    assert "\n" not in pkg.team


def test_train_stops_at_the_target_within_the_budget():
    x, y = load_digits("train")
    sub = CompetitionSubmission()
    rep = sub.train(x, y, budget_seconds=20)
    assert rep.stopped == "target" and rep.seconds < 20
    xt, yt = load_digits("test")
    assert (sub.predict(xt).argmax(1) == yt).mean() >= 0.9


# ------------------------------------------------------------------ the student's own entry
ENTRY = """
import numpy as np

from tinytorch.competition import PretrainedBaseline
from tinytorch.compression import structured_prune
from tinytorch.core.data import DataLoader, TensorDataset
from tinytorch.core.losses import cross_entropy
from tinytorch.core.tensor import Tensor


class Pruned(PretrainedBaseline):
    team = "pruned"
    category = {category!r}
    tags = ("pruning", "fp16")
    description = "structured pruning to 24 units, fine-tuned, float16"
    hidden = 24

    def optimize(self):
        self.model = structured_prune(self.model, 1 - self.hidden / 256)
        x, y = self.data
        opt = self.build_optimizer(self.model)
        for epoch in range(6):
            for xb, yb in DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, seed=epoch):
                loss = cross_entropy(self.model(Tensor(xb)), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.model.eval()

    def state(self):
        return {{k: v.astype(np.float16) for k, v in super().state().items()}}

    def load_state(self, arrays):
        super().load_state({{k: np.asarray(v, np.float32) for k, v in arrays.items()}})
"""


def _judges():
    from tito.judging import load_source

    path = ROOT / "modules" / "20_competition" / "judge.py"
    return load_source(path.read_text(encoding="utf-8"), str(path))


def _entry_package(tmp_path: Path, category: str = "size", extra: dict | None = None):
    """(zip bytes as uint8, a fresh instance loaded from the package) of ENTRY."""
    from tinytorch.arena.package import load_submission_class
    from tinytorch.competition import package_submission

    src = tmp_path / "src"
    src.mkdir(parents=True)
    (src / "submission.py").write_text(ENTRY.format(category=category))
    cls = load_submission_class(src / "submission.py")
    x, y = load_digits("train")
    sub = cls().start_from_pretrained(x, y)
    sub.optimize()
    pkg = package_submission(sub, src / "submission.py", tmp_path / "pkg")
    for name, text in (extra or {}).items():
        (pkg / name).write_text(text)
    data = Path(shutil.make_archive(str(tmp_path / "entry"), "zip", pkg)).read_bytes()
    fresh = cls()
    fresh.load(pkg / "weights")
    return np.frombuffer(data, dtype=np.uint8), fresh


def test_pretrained_baseline_is_the_shipped_model_and_too_big_for_size():
    from tinytorch.competition import PretrainedBaseline

    x, y = load_digits("train")
    base = PretrainedBaseline().start_from_pretrained(x, y)
    xt, yt = load_digits("test")
    assert (base.predict(xt).argmax(1) == yt).mean() >= 0.96
    assert stored_bytes(base.state()) > CompetitionRules().size_limit_bytes
    with pytest.raises(ValueError, match=r"\(3, 64\)"):
        PretrainedBaseline().start_from_pretrained(x[:3], y[:2])


def test_entry_judges_verify_the_package_from_its_bytes(tmp_path):
    """The entry's two judges pass a valid size entry, read from zip bytes and answers alone,
    and fail a package with an extra file, garbage bytes and a speed entry, saying why."""
    from tito.judging import verdict

    judges = _judges()
    data, fresh = _entry_package(tmp_path)
    assert verdict(judges, "entry_package", {}, {"package": data}, None) == (1.0, None)
    inputs = judges.draw("entry_beats_baseline", 7)
    x = inputs["x"]
    scores = np.concatenate([fresh.predict(x[i : i + 1]) for i in range(len(x))])
    outputs = {"package": data, "scores": scores}
    assert verdict(judges, "entry_beats_baseline", inputs, outputs, None) == (1.0, None)
    frac, why = verdict(judges, "entry_beats_baseline", inputs,
                        {**outputs, "scores": scores[::-1].copy()}, None)
    assert frac == 0 and "below the target" in why  # answers in the wrong order
    bad, _ = _entry_package(tmp_path / "extra", extra={"data.txt": "hidden weights"})
    frac, why = verdict(judges, "entry_package", {}, {"package": bad}, None)
    assert frac == 0 and "data.txt is outside weights/" in why
    junk = np.frombuffer(b"PK not a zip", dtype=np.uint8)
    frac, why = verdict(judges, "entry_package", {}, {"package": junk}, None)
    assert frac == 0 and "not a readable zip" in why
    speed, _ = _entry_package(tmp_path / "speed", category="speed")
    frac, why = verdict(judges, "entry_package", {}, {"package": speed}, None)
    assert frac == 0 and "size, efficiency" in why


def test_efficiency_judge_charges_the_whole_cell_time_to_the_queries(tmp_path):
    from tito.judging import verdict

    judges = _judges()
    data, fresh = _entry_package(tmp_path, category="efficiency")
    inputs = judges.draw("entry_beats_baseline", 11)
    x = inputs["x"]
    outputs = {"package": data,
               "scores": np.concatenate([fresh.predict(x[i : i + 1]) for i in range(len(x))])}
    assert verdict(judges, "entry_beats_baseline", inputs, outputs, None)[0] == 1.0
    # 6 KiB against 333 KiB: it wins at any latency up to ~50x the baseline's
    assert verdict(judges, "entry_beats_baseline", inputs, outputs, 0.05)[0] == 1.0
    frac, why = verdict(judges, "entry_beats_baseline", inputs, outputs, 600.0)
    assert frac == 0 and "measured from outside" in why


# ---------------------------------------------------------------------------- packages
SMALL = """
from tinytorch.competition import CompetitionSubmission


class Small(CompetitionSubmission):
    team = {team!r}
    tags = ("test",)
    description = {description!r}
    hidden, max_epochs = 8, 1
{body}
"""


def make_package(dest: Path, team: str, body: str = "", description: str = "a test package",
                 train: bool = True) -> Path:
    src = dest.parent / f"{dest.name}-src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "submission.py").write_text(
        SMALL.format(team=team, description=description, body=body)
    )
    if not train:  # no weights: malformed, but instant (no subprocess), for limit tests
        dest.mkdir(parents=True)
        shutil.copy(src / "submission.py", dest / "submission.py")
        meta = {"team": team, "category": "size", "tags": ["test"], "description": description}
        (dest / "submission.yaml").write_text(yaml.safe_dump(meta))
        return dest
    return build_package(src, dest, check=False)


def test_package_hash_is_the_same_for_a_folder_and_its_zip(tmp_path):
    pkg = make_package(tmp_path / "p", "zipper")
    archive = shutil.make_archive(str(tmp_path / "p"), "zip", pkg)
    a = read_package(pkg, tmp_path / "w1")
    b = read_package(archive, tmp_path / "w2")
    assert a.ok and b.ok and a.hash == b.hash and a.model_bytes == b.model_bytes
    with zipfile.ZipFile(tmp_path / "nested.zip", "w") as zf:  # a zip of the folder itself
        for f in pkg.rglob("*"):
            if f.is_file():
                zf.write(f, Path("p") / f.relative_to(pkg))
    assert read_package(tmp_path / "nested.zip", tmp_path / "w3").hash == a.hash


def test_dangerous_and_malformed_packages_are_refused_without_running(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../escaped.txt", "x")
        zf.writestr("submission.py", "x = 1\n")
    pkg = read_package(evil, tmp_path / "w")
    assert any("outside the package" in p for p in pkg.problems)
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path.parent / "escaped.txt").exists()

    folder = make_package(tmp_path / "p", "t")
    (folder / "data.bin").write_bytes(b"\0" * 100)  # weights hidden outside weights/
    (folder / "helper.py").write_text("def f(:\n")
    pkg = read_package(folder, tmp_path / "w2")
    text = " ".join(pkg.problems)
    assert "data.bin is outside weights/" in text and "helper.py line 1: syntax error" in text


# ------------------------------------------------------------------ the arena on the samples
@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """Every bundled sample built into a package and evaluated once."""
    work = tmp_path_factory.mktemp("competition")
    start = time.perf_counter()
    packages = build_samples(work / "packages")
    arena = Arena(work / "arena", limits=ArenaLimits(wall_seconds=HANG_SECONDS))
    outcomes = {name: arena.evaluate(path) for name, path in packages.items()}
    return {
        "work": work,
        "arena": arena,
        "packages": packages,
        "outcomes": outcomes,
        "seconds": time.perf_counter() - start,
    }


# the good samples; int8 / pruned / autotuned need modules 17 / 18 / 19 (skipped without them)
GOOD = [n for n in ("baseline", "speedrun", "int8", "pruned", "autotuned") if n in sample_dirs()]
BROKEN = [
    "broken_crash",
    "broken_hang",
    "broken_memory",
    "broken_shape",
    "broken_dtype",
    "broken_nan",
    "broken_output",
    "broken_labels",
    "broken_write",
    "broken_malformed",
]


def test_every_sample_is_bundled_and_ends_as_expected(samples):
    expected = expected_outcomes()
    available = set(sample_dirs())
    assert set(BROKEN) <= available and {"baseline", "speedrun"} <= available
    problems = [
        check_outcome(name, o.entry, expected[name]) for name, o in samples["outcomes"].items()
    ]
    assert [p for p in problems if p] == []
    for name in BROKEN:
        assert samples["outcomes"][name].status == expected[name]["status"] != "ok"


@pytest.mark.parametrize(
    "name, pattern",
    [
        ("broken_crash", r"predict: ZeroDivisionError: .* \(at submission\.py:14 in predict\)"),
        ("broken_hang", rf"no result within the {HANG_SECONDS:g} s wall-time limit"),
        ("broken_memory", r"load: ran out of memory under the 1024 MiB limit"),
        ("broken_shape", r"returned shape \(1, 9\) for query 0; expected \(1, 10\)"),
        ("broken_dtype", r"returned dtype int64 for query 0"),
        ("broken_nan", r"non-finite score\(s\) \(NaN or inf\) for query 0"),
        ("broken_output", r"printed more than 1048576 bytes"),
        ("broken_labels", r"tried to read '.*digits\.npz' during load"),
        ("broken_write", r"tried to write '\.\./escape-cache\.txt' during load"),
        ("broken_malformed", r"missing key 'team'.*category 'beauty'.*tags must be a list"),
    ],
)
def test_each_broken_sample_gets_its_specific_reason(samples, name, pattern):
    entry = samples["outcomes"][name].entry
    assert re.search(pattern, entry.error), entry.error
    assert entry.acc_public is None and entry.model_bytes is None


def server_paths() -> list[str]:
    """Absolute folders of this machine that a public view must not show."""
    import tinytorch

    return [str(Path(tinytorch.__file__).resolve().parent), sys.prefix,
            str(Path(tempfile.gettempdir()).resolve()), str(Path.home())]


def test_no_public_text_holds_an_absolute_path_of_the_server(samples):
    """Reasons (broken_labels reads the bundled data by its absolute path), printed output,
    the board, results.json and the reports: no absolute path of this machine in any of them."""
    import html

    from tinytorch.arena.harness import _ABSOLUTE

    arena = samples["arena"]
    texts = {"leaderboard": arena.leaderboard_text(), "html": json.dumps(payload(arena))}
    for name, outcome in samples["outcomes"].items():
        row = arena.store.row(outcome.submission_id)
        texts[f"{name} error"] = row["error"]
        texts[f"{name} output"] = row["output_head"]
        texts[f"{name} results.json"] = outcome.results_path.read_text()
        texts[f"{name} report"] = outcome.report_path.read_text()
    for where, text in texts.items():
        for path in server_paths():
            assert path not in text, f"{where} shows {path}: {text[:300]}"
        plain = html.unescape(text.replace("\\/", "/"))  # "&lt;tinytorch&gt;/..." in the page
        assert not _ABSOLUTE.search(plain), f"{where}: {_ABSOLUTE.search(plain)}"
    assert "'<tinytorch>/datasets/digits.npz'" in texts["broken_labels error"]


@pytest.mark.parametrize(
    "text, public",
    [
        ("read '{pkg}/datasets/digits.npz'", "read '<tinytorch>/datasets/digits.npz'"),
        ("No such file: '{tmp}/tt-arena-x1/run-train/submission/w.npy'",
         "No such file: 'submission/w.npy'"),
        ("at /srv/course/secret/labels.npy:3", "at …/labels.npy:3"),
        ("[Errno 13] '{arena}/leaderboard.sqlite'", "[Errno 13] '<arena>/leaderboard.sqlite'"),
        ("p50/p90 1/2 acc / sqrt(ms) MiB/s", "p50/p90 1/2 acc / sqrt(ms) MiB/s"),
    ],
)
def test_public_text_drops_absolute_paths(tmp_path, text, public):
    import tinytorch
    from tinytorch.arena.harness import public_text

    pkg = str(Path(tinytorch.__file__).resolve().parent)
    tmp = str(Path(tempfile.gettempdir()).resolve())
    arena = str(tmp_path / "arena")
    shown = public_text(text.format(pkg=pkg, tmp=tmp, arena=arena), {arena: "<arena>"})
    assert shown == public


def test_broken_samples_hurt_nothing_else(samples):
    outcomes = samples["outcomes"]
    hang = outcomes["broken_hang"]
    # killed HANG_SECONDS after the query it never answered (the runner's start comes first)
    assert hang.timings["infer"] < HANG_SECONDS + 3, "the hang is killed at the wall limit"
    row = samples["arena"].store.row(outcomes["broken_output"].submission_id)
    assert len(row["output_head"]) < 4096, "megabytes of output are not kept"
    assert not (samples["work"] / "escape-cache.txt").exists()
    assert not list(Path(tempfile.gettempdir()).glob("escape-cache.txt"))
    for name in GOOD:
        assert outcomes[name].status == "ok", outcomes[name].summary()


def test_good_samples_are_ranked_by_the_written_formulas(samples):
    arena = samples["arena"]
    rules = arena.rules
    arena.award("speedrun", 2, "early stopping on a hold-out split")
    arena.award("baseline", 1, "a clean reference")
    entries = arena.entries()
    ok = [e for e in entries if e.status == "ok"]
    assert sorted(e.team for e in ok) == sorted(GOOD)
    target = rules.target_accuracy
    kib = {e.team: e.model_bytes / 1024 for e in ok}
    expected = {
        "speed": [
            e.team
            for e in sorted(ok, key=lambda e: (e.train_seconds, e.submission_id))
            if e.speed_acc_public >= target and e.train_seconds <= rules.train_budget_seconds
        ],
        "size": [
            e.team
            for e in sorted(ok, key=lambda e: (-e.acc_public, e.model_bytes, e.submission_id))
            if e.acc_public >= target and e.model_bytes <= rules.size_limit_bytes
        ],
        "efficiency": [
            e.team
            for e in sorted(
                ok, key=lambda e: -e.acc_public / math.sqrt(e.latency_p50_ms * kib[e.team])
            )
            if e.acc_public >= target
        ],
        "innovation": ["speedrun", "baseline"],
    }
    board = leaderboard(entries, rules)
    for cat in CATEGORIES:
        got = [s.team for s in board[cat] if s.rank is not None]
        assert got == expected[cat], f"{cat}: {got} != {expected[cat]}"
    # what the samples are built to show, in numbers
    by = {e.team: e for e in ok}
    assert set(expected["speed"]) == set(GOOD) and expected["speed"][0] == "speedrun"
    assert set(expected["efficiency"]) == set(GOOD)
    assert set(expected["size"]) == {"int8", "pruned"} & set(GOOD)
    if "int8" in by:
        assert by["baseline"].model_bytes / by["int8"].model_bytes > 2.5
    if "pruned" in by:
        assert by["baseline"].model_bytes / by["pruned"].model_bytes > 3
    size_board = {s.team: s for s in board["size"]}
    assert "bytes > size limit" in size_board["baseline"].reason
    final = leaderboard(entries, rules, final=True)
    for cat in CATEGORIES:  # every good sample also clears the target on the private split
        assert {s.team for s in final[cat] if s.rank} == set(expected[cat])


def test_public_views_never_show_private_accuracy(samples):
    arena = samples["arena"]
    text = json.dumps(payload(arena, final=False))
    assert "acc_private" not in text and "speed_acc_private" not in text
    for sid in range(1, len(samples["outcomes"]) + 1):
        results = json.loads((arena.root / "results" / f"{sid}.json").read_text())
        names = [item["name"] for item in results["leaderboard"]]
        assert not any("private" in n.lower() for n in names)


def test_labels_never_reach_the_sandbox(samples, tmp_path):
    spy = make_package(
        tmp_path / "spy",
        "spy",
        body='''
    def load(self, folder):
        import json, os
        import numpy as np
        super().load(folder)
        for root, _, files in os.walk("."):
            for f in sorted(files):
                path = os.path.join(root, f)
                info = ""
                if f.endswith(".npy"):
                    a = np.load(path)
                    info = f"{a.shape} {a.dtype}"
                if f == "spec.json":
                    info = ",".join(sorted(json.load(open(path))))
                print("SEEN", path, info)
''',
    )
    outcome = samples["arena"].evaluate(spy)
    assert outcome.status == "ok", outcome.summary()
    seen = samples["arena"].store.row(outcome.submission_id)["output_head"]
    lines = [ln for ln in seen.splitlines() if ln.startswith("SEEN")]
    npy = [ln for ln in lines if ".npy" in ln]
    assert npy == [], lines  # not even the inputs: they arrive one query at a time
    spec = next(ln for ln in lines if "spec.json" in ln)
    assert "labels" not in spec and "entry" in spec
    assert all(re.match(r"SEEN \./(spec\.json|submission/)", ln) for ln in lines)


def test_local_evaluation_scores_like_the_arena_and_stores_nothing(samples, tmp_path):
    """tinytorch.arena.Evaluator (what a student runs) gives the arena's entry, with no
    database, no files and without importing tito or sqlite3."""
    code = (
        "import sys, json\n"
        "from tinytorch.arena import ArenaLimits, Evaluator\n"
        f"ev = Evaluator(limits=ArenaLimits(wall_seconds={HANG_SECONDS}))\n"
        "out = {}\n"
        "for name, path in json.loads(sys.argv[1]).items():\n"
        "    e = ev.evaluate(path)\n"
        "    out[name] = [e.team, e.status, e.acc_public, e.acc_private, e.model_bytes,\n"
        "                 list(e.tags)]\n"
        "out['modules'] = sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "                        ('tito', 'sqlite3', '_sqlite3'))\n"
        "print(json.dumps(out))\n"
    )
    names = ["baseline", "broken_crash", "broken_malformed"]
    paths = {n: str(samples["packages"][n]) for n in names}
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(paths)], cwd=tmp_path, capture_output=True,
        text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got.pop("modules") == []  # the student side loads neither tito nor SQLite
    for name in names:
        e = samples["outcomes"][name].entry
        # speed accuracy left out: train() stops at a wall-time budget, so it varies with load
        want = [e.team, e.status, e.acc_public, e.acc_private, e.model_bytes, list(e.tags)]
        assert got[name] == want, name
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_moved_arena_names_say_where_they_went():
    import tinytorch.arena

    with pytest.raises(AttributeError, match=r"from tito\.arena import Arena"):
        tinytorch.arena.Arena  # noqa: B018
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        tinytorch.arena.nothing  # noqa: B018


def test_second_evaluation_changes_nothing(samples):
    arena = samples["arena"]
    before = (arena.store.rows(), arena.store.generation(), arena.store.awards())
    for name, path in samples["packages"].items():
        again = arena.evaluate(path)
        assert not again.created and again.submission_id == samples["outcomes"][name].submission_id
        archive = shutil.make_archive(str(samples["work"] / f"zip-{name}"), "zip", path)
        assert arena.evaluate(archive).submission_id == again.submission_id
    assert (arena.store.rows(), arena.store.generation(), arena.store.awards()) == before


def test_database_passes_integrity_and_invariant_checks(samples, tmp_path):
    arena = samples["arena"]
    assert arena.problems() == []
    with sqlite3.connect(arena.store.path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # the invariant checks can fail: break a copy in two ways
    copy = tmp_path / "copy.sqlite"
    with sqlite3.connect(arena.store.path) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    with sqlite3.connect(copy) as con:
        con.execute("UPDATE evaluations SET acc_private = NULL WHERE status = 'ok'")
        con.execute(
            "INSERT INTO submissions (team, package_hash, source, day, submitted_at) "
            "VALUES ('ghost', ?, 'x', '2024-01-01', 'now')",
            ("f" * 64,),
        )
    problems = LeaderboardStore(copy).problems()
    assert any("ok but acc_private is None" in p for p in problems)
    assert any("has no evaluation" in p for p in problems)


def test_results_json_is_gradescope_format(samples):
    arena = samples["arena"]
    for name, outcome in samples["outcomes"].items():
        data = json.loads(outcome.results_path.read_text())
        assert {"score", "tests", "leaderboard", "output", "execution_time"} <= set(data)
        assert all({"name", "score", "max_score", "status"} <= set(t) for t in data["tests"])
        assert all({"name", "value"} <= set(item) for item in data["leaderboard"])
        status = next(i["value"] for i in data["leaderboard"] if i["name"] == "Status")
        assert status == outcome.status
        assert data["score"] == (3 if name in GOOD else 1 if name != "broken_malformed" else 0)
        assert data["extra_data"]["machine"]["pinned_cpu"] == arena.cpu


def test_reports_compare_with_the_baseline(samples):
    arena = samples["arena"]
    entries = {e.team: e for e in arena.entries()}
    text = samples["outcomes"]["int8"].report_path.read_text()
    ratio = compare_to_baseline(entries["int8"], entries["baseline"])["size_reduction"]
    assert f"size reduction: {ratio:.2f}x" in text
    assert "quantization" in text and "Machine" in text
    assert samples["outcomes"]["int8"].report_path.with_suffix(".png").stat().st_size > 1000
    crash = samples["outcomes"]["broken_crash"].report_path.read_text()
    assert "ZeroDivisionError" in crash


def test_leaderboard_text_and_cli(samples, capsys):
    from tito.competition_cli import main

    root = str(samples["arena"].root)
    assert main(["leaderboard", "--arena", root]) == 0
    out = capsys.readouterr().out
    for cat in CATEGORIES:
        assert f"{cat.upper()}: {FORMULAS[cat]}" in out
    assert "why: inference run: no result within" in out
    assert main(["check", "--arena", root]) == 0
    assert main(["award", "baseline", "1", "--reason", "reference", "--arena", root]) == 0
    assert main(["award", "nobody", "1", "--reason", "x", "--arena", root]) == 2
    assert "no team 'nobody'" in capsys.readouterr().err
    assert main(["leaderboard", "--final", "--json", "--arena", root]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["final"] is True and set(data["standings"]) == set(CATEGORIES)


def test_cli_package_trains_checks_and_zips(tmp_path, capsys):
    from tito.competition_cli import main

    src = tmp_path / "team"
    shutil.copytree(sample_dirs()["baseline"], src)
    code = (src / "submission.py").read_text().replace('team = "baseline"', 'team = "my-team"')
    (src / "submission.py").write_text(code)
    assert main(["package", str(src), "--out", str(tmp_path / "team.zip")]) == 0
    assert "team my-team" in capsys.readouterr().out
    pkg = read_package(tmp_path / "team.zip", tmp_path / "w")
    assert pkg.ok and pkg.team == "my-team" and pkg.model_bytes > 10_000
    (src / "submission.yaml").write_text("team: my-team\ncategory: beauty\n")
    assert main(["package", str(src)]) == 2
    assert "category 'beauty' must be one of" in capsys.readouterr().err


def test_cli_package_checks_the_metadata_before_training(tmp_path, capsys, monkeypatch):
    import tinytorch.datasets
    from tito.competition_cli import main

    def no_training(*args, **kwargs):
        raise AssertionError("training data loaded before the metadata was checked")

    monkeypatch.setattr(tinytorch.datasets, "load_digits", no_training)
    src = tmp_path / "team"
    shutil.copytree(sample_dirs()["baseline"], src)
    (src / "submission.yaml").write_text(
        "team: \"my-team\\n\"\ncategory: size\ntags: [int8]\ndescription: d\n"
    )
    assert main(["package", str(src)]) == 2
    err = capsys.readouterr().err
    assert "team 'my-team\\n' must be 1-40 letters" in err and "nothing was trained" in err
    assert not (tmp_path / "team-package").exists()
    (src / "submission.yaml").unlink()  # the class's own metadata is checked the same way
    code = (src / "submission.py").read_text().replace('team = "baseline"', 'team = "a b"')
    (src / "submission.py").write_text(code)
    assert main(["package", str(src)]) == 2
    assert "team 'a b' must be" in capsys.readouterr().err


@pytest.mark.parametrize("points", ["-1", "-0.5", "0", "nan", "inf", "-inf"])
def test_cli_award_refuses_points_that_are_not_positive_and_finite(tmp_path, capsys, points):
    from tito.competition_cli import main

    arena = Arena(tmp_path / "arena")
    arena.evaluate(make_package(tmp_path / "p", "team1", train=False))  # malformed: instant
    # after "--" even "-inf" is a value (argparse reads it as an option otherwise)
    code = main(["award", "--reason", "x", "--arena", str(arena.root), "--", "team1", points])
    assert code == 2
    err = capsys.readouterr().err
    assert "points must be a positive finite number" in err and f"got {float(points)!r}" in err
    assert arena.store.awards() == []
    assert main(["award", "team1", "2", "--reason", "x", "--arena", str(arena.root)]) == 0


# --------------------------------------------------------------- more ways to break a sandbox
@pytest.fixture(scope="module")
def small_arena(tmp_path_factory):
    return Arena(
        tmp_path_factory.mktemp("limits") / "arena",
        limits=ArenaLimits(wall_seconds=10, cpu_seconds=1, file_bytes=2**20, repeats=1),
    )


SANDBOX_CASES = [
    (
        "busy",
        "    def load(self, folder):\n        while True:\n            pass\n",
        "cpu_limit",
        "s of CPU time",
    ),
    (
        "bigfile",
        "    def load(self, folder):\n        super().load(folder)\n"
        "        open('big.bin', 'wb').write(bytes(2 * 2**20))\n",
        "file_size",
        "1048576 byte limit",
    ),
    (
        "spawner",
        "    def load(self, folder):\n        import subprocess\n"
        "        subprocess.run(['true'])\n",
        "forbidden_call",
        "start a process",
    ),
    (
        "caller",
        "    def load(self, folder):\n        import socket\n"
        "        socket.create_connection(('127.0.0.1', 9))\n",
        "forbidden_call",
        "network",
    ),
    (
        "segfault",
        "    def load(self, folder):\n        import os, signal\n"
        "        os.kill(os.getpid(), signal.SIGSEGV)\n",
        "crash",
        "killed by SIGSEGV",
    ),
    (
        "quitter",
        "    def predict(self, x):\n        raise SystemExit(3)\n",
        "crash",
        "called sys.exit(3)",
    ),
    (
        "dbreader",
        "    def load(self, folder):\n        import sqlite3\n"
        "        sqlite3.connect('ARENA/leaderboard.sqlite')\n",
        "forbidden_read",
        "arena's files",
    ),
    (
        "limits",
        "    def load(self, folder):\n        import resource\n"
        "        resource.setrlimit(resource.RLIMIT_CPU, (1000, 1000))\n",
        "forbidden_call",
        "change its resource limits",
    ),
]


@pytest.mark.parametrize(
    "team, body, kind, text",
    SANDBOX_CASES,
    ids=[c[0] for c in SANDBOX_CASES],
)
def test_sandbox_limits_and_refusals(small_arena, tmp_path, team, body, kind, text):
    pkg = make_package(tmp_path / team, team, body.replace("ARENA", str(small_arena.root)))
    outcome = small_arena.evaluate(pkg)
    assert outcome.status == kind and text in outcome.entry.error, outcome.summary()
    assert small_arena.problems() == []


def test_daily_limit_and_idempotent_resubmission(tmp_path):
    arena = Arena(tmp_path / "arena", rules=CompetitionRules(daily_limit=2))
    day1 = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    pkgs = [make_package(tmp_path / f"p{i}", "limited", description=f"v{i}", train=False)
            for i in range(3)]
    first = arena.evaluate(pkgs[0], now=day1)
    arena.evaluate(pkgs[1], now=day1)
    assert first.status == "malformed" and "no weights" in first.entry.error
    with pytest.raises(SubmissionLimitError, match="limit 2 per UTC day"):
        arena.evaluate(pkgs[2], now=day1)
    assert arena.evaluate(pkgs[0], now=day1).submission_id == first.submission_id
    assert arena.evaluate(pkgs[2], now=day1 + timedelta(days=1)).created
    assert len(arena.store.rows()) == 3 and arena.problems() == []


def _record(args):
    path, team, digest = args
    store = LeaderboardStore(path)
    evaluation = {
        "status": "malformed", "error": "test", "acc_public": None, "acc_private": None,
        "speed_acc_public": None, "speed_acc_private": None, "train_seconds": None,
        "latency_p50_ms": None, "latency_p90_ms": None, "latency_passes": [],
        "model_bytes": None, "peak_rss_kb": None, "base_rss_kb": None, "harness_seconds": 0.1,
        "machine": {"cpu": "test"}, "output_head": "", "evaluated_at": "now",
    }
    submission = {"team": team, "package_hash": digest, "source": "x", "day": "2024-01-01",
                  "submitted_at": "now"}
    try:
        return store.record(submission, evaluation, daily_limit=2)[1]
    except SubmissionLimitError:
        return "limit"


def test_concurrent_evaluators_keep_the_database_consistent(tmp_path):
    path = tmp_path / "lb.sqlite"
    LeaderboardStore(path, CompetitionRules(daily_limit=2))
    jobs = [(path, "same", "a" * 64)] * 4 + [(path, "many", c * 64) for c in "bcde"]
    with multiprocessing.get_context("fork").Pool(4) as pool:
        results = pool.map(_record, jobs)
    assert results[:4].count(True) == 1 and results[:4].count(False) == 3
    assert results[4:].count(True) == 2 and results[4:].count("limit") == 2
    store = LeaderboardStore(path)
    assert len(store.rows()) == 3 and store.problems() == []
    assert store.generation() == 3


# -------------------------------------------------------------------------------- browser
def dump_dom(url: str, user_dir: Path, budget_ms: int = 1500) -> subprocess.Popen:
    """Headless chromium printing the DOM after `budget_ms` of virtual time (fetches pause it)."""
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={user_dir}", f"--virtual-time-budget={budget_ms}",
        "--dump-dom", url,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def ranked_teams(dom: str, category: str) -> list[str]:
    pattern = rf'<table class="ranking" data-category="{category}">(.*?)</table>'
    table = re.search(pattern, dom, re.S)
    assert table, f"no {category} ranking table in the page"
    return re.findall(r'<tr class="ranked" data-team="([^"]+)" data-rank="\d+"', table.group(1))


@NEEDS_CHROMIUM
def test_static_leaderboard_renders_in_chromium(samples, tmp_path):
    arena = samples["arena"]
    page = arena.write_html()
    proc = dump_dom(page.as_uri(), tmp_path / "chromium")
    dom = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 0 and "<body" in dom
    board = arena.standings()
    for cat in CATEGORIES:
        assert ranked_teams(dom, cat) == [s.team for s in board[cat] if s.rank is not None]
    img = re.search(r'<img id="pareto"[^>]*>', dom).group(0)
    assert 'src="data:image/png;base64,' in img
    loaded = re.search(r'data-loaded="(\d+)"', img)
    assert loaded and int(loaded.group(1)) > 100, f"the Pareto plot did not load: {img[:200]}"
    assert 'data-status="timeout"' in dom and "wall-time limit" in dom


@NEEDS_CHROMIUM
def test_live_view_updates_after_a_new_evaluation(samples, tmp_path):
    from tito.arena.server import make_server

    arena = Arena(tmp_path / "live", limits=ArenaLimits(wall_seconds=HANG_SECONDS))
    arena.evaluate(samples["packages"]["baseline"])
    server = make_server(arena.root, poll_interval=0.05)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        proc = dump_dom(server.url, tmp_path / "chromium", budget_ms=1000)
        deadline = time.monotonic() + 30
        while server.waiting == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.waiting == 1, "the page never started polling for updates"
        before = arena.store.generation()
        outcome = arena.evaluate(samples["packages"]["speedrun"])  # while the page is open
        assert outcome.created and arena.store.generation() == before + 1
        dom = proc.communicate(timeout=60)[0].decode()
    finally:
        server.shutdown()
        server.server_close()
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert 'data-updates="1"' in body and f'data-generation="{before + 1}"' in body, body
    assert "speedrun" in ranked_teams(dom, "speed"), "the new team is not in the updated table"
    img = re.search(r'<img id="pareto"[^>]*>', dom).group(0)
    assert f"/pareto.png?generation={before + 1}" in img and re.search(r'data-loaded="[1-9]', img)


# ---------------------------------------------------------------------------------- bench
@pytest.mark.slow
def test_bench_quick_runs_and_writes_valid_json(tmp_path):
    out = tmp_path / "competition.json"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "competition.py"), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=180, env=env, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert data["bench"] == "competition" and len(data["targets"]) == 2
    lat = data["results"]["latency"]
    assert len(lat["p50_ms"]) == 3 and all(v > 0 for v in lat["p50_ms"])
    assert data["results"]["overhead_seconds"]["total"] > 0
    assert "Targets" in proc.stdout and "spread" in proc.stdout
