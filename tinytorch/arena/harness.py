"""Local evaluation: run a package in sandboxes and score it on the hidden set, keeping nothing.

    ev = Evaluator()                               # default rules and limits
    entry = ev.evaluate("my_team/")                # or a .zip -> competition.Entry
    print(entry.status, entry.acc_public, entry.latency_p50_ms)

Per package: read and check it (never executing it), then two sandboxed runs (`sandbox.py`),
driven and measured from this process over the runner's pipes (`protocol.py`): the inference
run (packaged weights; MLPerf single-stream: this process sends one query at a time with a
fresh nonce, in a fresh random order, and times each answer itself, interleaved with a null
model whose p50 is subtracted) and the training run (fresh instance, no weights, `train(x, y,
budget)` timed from here, then one batch of predictions). Answers are plain `.npy` scores; only
this process holds the labels and scores them on the public and private parts. Nothing the
runner reports about itself is used. Any failure becomes the entry's status with the reason.
See "The arena: measured from outside" in docs/grading.md.

This is what a student runs on their own package. The course tool's `tito.arena.Arena` builds
on `Evaluator`: it records every evaluation in the SQLite leaderboard and writes the Gradescope
results.json, the performance report and the HTML views.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import tinytorch.datasets as _datasets
from tinytorch.competition import (
    NUM_CLASSES,
    CompetitionRules,
    Entry,
    PredictionError,
    check_scores,
    percentile,
    public_private_split,
    split_accuracies,
)

from . import protocol
from .package import Package, read_package
from .sandbox import RunnerProcess, RunOutcome, SandboxLimits, pick_cpu

DIGITS_FILE = Path(__file__).resolve().parents[1] / "datasets" / "digits.npz"

# path characters: anything but whitespace, quotes, separators of prose and of Python reprs
_SEG = r"[^\s'\"/:,;()\[\]{}<>|]+"
_ABSOLUTE = re.compile(rf"(?<![\w.~>/-])/(?:{_SEG}/)+({_SEG})")  # two or more segments
_SANDBOX = re.compile(r"<tmp>/tt-arena-[^/\s'\"]+/run-(?:infer|train|null)/")


def public_text(text: str, roots: dict[str, str] | None = None) -> str:
    """`text` with no absolute path of the machine it ran on: a reason or output shown on the
    public board, results.json and the reports. Known folders become labels ("<tinytorch>",
    "<arena>", "<python>", "<tmp>", "~"), a sandbox's own prefix disappears ("submission/..."),
    and any other absolute path keeps only its last part ("…/name")."""
    if not text:
        return text
    known = dict(roots or {})
    known.setdefault(str(Path(__file__).resolve().parents[1]), "<tinytorch>")
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}:
        known.setdefault(str(Path(prefix).resolve()), "<python>")
        known.setdefault(prefix, "<python>")
    known.setdefault(str(Path(tempfile.gettempdir()).resolve()), "<tmp>")
    known.setdefault(tempfile.gettempdir(), "<tmp>")
    known.setdefault(str(Path.home()), "~")
    for root in sorted((r for r in known if len(r) > 1), key=len, reverse=True):
        pattern = re.escape(root.rstrip("/")) + r"(?=/|[\s'\":,;()\[\]{}|]|$)"
        text = re.sub(pattern, known[root].replace("\\", "\\\\"), text)
    text = _SANDBOX.sub("", text)
    return _ABSOLUTE.sub(lambda m: "…/" + m.group(1), text)


@dataclass(frozen=True)
class ArenaLimits:
    """How the arena runs each package. Tests shorten `wall_seconds` to catch hangs fast."""

    wall_seconds: float = 30.0  # inference run: killed if an answer (or the start, the load)
    # takes longer than this ("timeout": a hang)
    run_seconds: float = 300.0  # inference run: the whole run (warm-up, every pass, the null
    # model's turns) must end within this ("timeout": too slow for the number of queries)
    cpu_seconds: float = 60.0  # RLIMIT_CPU of each run ("cpu_limit")
    memory_bytes: int = 1 << 30  # RLIMIT_AS of each run ("memory"); numpy needs ~200 MiB
    file_bytes: int = 16 << 20  # RLIMIT_FSIZE: the largest file a run may write ("file_size")
    output_bytes: int = 1 << 20  # stdout + stderr bytes before a run is killed ("output")
    open_files: int = 256  # RLIMIT_NOFILE
    train_slack_seconds: float = 15.0  # training run wall limit = budget + this (imports etc.)
    warmup: int = 50  # untimed single-stream queries (validation inputs) before the passes
    repeats: int = 5  # timed passes over all hidden inputs; latency = median of the passes
    perturbation: float = 0.03  # std of the fresh noise on every input of passes 2..: no query
    # is ever sent twice verbatim, so answers cached from an earlier pass do not match
    min_agreement: float = 0.9  # a pass 2.. counts toward latency only if this share of its
    # answers name the class pass 1 named (cheap answers to the unscored passes gain nothing)
    calibrate: bool = True  # time a null model interleaved with the team's; subtract its p50
    cpu: int | None = None  # CPU every run is pinned to (None: the last one available)

    def for_phase(self, phase: str, rules: CompetitionRules) -> SandboxLimits:
        wall = self.wall_seconds
        if phase == "train":
            wall = rules.train_budget_seconds + self.train_slack_seconds
        return SandboxLimits(
            wall_seconds=wall,
            run_seconds=max(wall, self.run_seconds) if phase == "infer" else wall + 60.0,
            cpu_seconds=self.cpu_seconds if phase == "infer" else max(self.cpu_seconds, wall),
            memory_bytes=self.memory_bytes,
            file_bytes=self.file_bytes,
            output_bytes=self.output_bytes,
            open_files=self.open_files,
        )


@dataclass
class HiddenSet:
    """The hidden test set in the order the submissions see it. Labels stay in this process."""

    inputs: np.ndarray  # (n, 64) float32, shuffled
    labels: np.ndarray  # (n,) int64, same order
    public_idx: np.ndarray
    private_idx: np.ndarray

    @classmethod
    def from_digits(cls, rules: CompetitionRules) -> HiddenSet:
        x, y = _datasets.load_digits("test")
        order = np.random.default_rng(rules.split_seed).permutation(len(y))
        pub, priv = public_private_split(len(y), rules.public_fraction, seed=rules.split_seed + 1)
        return cls(np.ascontiguousarray(x[order]), y[order], pub, priv)


def describe_machine(cpu: int | None) -> dict:
    """The standardized hardware a result was measured on, stored with every evaluation."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "logical_cpus": os.cpu_count(),
        "pinned_cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas_threads": 1,
    }


class Evaluator:
    """Evaluates packages in sandboxes on the hidden set; stores nothing (see the docstring)."""

    def __init__(
        self,
        rules: CompetitionRules | None = None,
        limits: ArenaLimits | None = None,
        python: str | None = None,
        sandboxed: bool = True,
    ):
        self.rules = rules or CompetitionRules()
        self.limits = limits or ArenaLimits()
        self.python = python
        # behind the OS boundary (boundary.py); False only for trusted code (--no-sandbox)
        self.sandboxed = sandboxed
        self.cpu = self.limits.cpu if self.limits.cpu is not None else pick_cpu()
        self._hidden: HiddenSet | None = None

    @property
    def hidden(self) -> HiddenSet:
        if self._hidden is None:
            self._hidden = HiddenSet.from_digits(self.rules)
        return self._hidden

    @property
    def forbidden_paths(self) -> list[str]:
        """What no submission may read: the bundled test data (the arena adds its own files)."""
        return [str(DIGITS_FILE)]

    @property
    def public_roots(self) -> dict[str, str]:
        """Folders of this machine named by a label in public text (the arena adds its own)."""
        return {}

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, source: str | Path) -> Entry:
        """Evaluate one package (folder or zip) -> its scored `Entry` (submission_id 0)."""
        with tempfile.TemporaryDirectory(prefix="tt-arena-") as tmp:
            pkg = read_package(source, tmp)
            return entry_from_evaluation(pkg, self._run_all(pkg, Path(tmp)))

    def _sandbox(self, pkg: Package | None, phase: str, tmp: Path) -> Path:
        """The run's folder: the submission (none for the null model) and, for training, the
        training split. Never the hidden inputs: they are sent one request at a time."""
        box = tmp / f"run-{phase}"
        box.mkdir()
        if pkg is not None:
            ignore = shutil.ignore_patterns("weights") if phase == "train" else None
            shutil.copytree(pkg.path, box / "submission", ignore=ignore)
        if phase == "train":
            x, y = _datasets.load_digits("train")
            np.save(box / "train_x.npy", x)
            np.save(box / "train_y.npy", y)
        return box

    def _start(self, pkg: Package | None, phase: str, tmp: Path) -> RunnerProcess:
        box = self._sandbox(pkg, phase, tmp)
        spec = {
            "phase": phase,
            "entry": pkg.entry if pkg is not None else None,
            "budget_seconds": self.rules.train_budget_seconds,
            "cpu": self.cpu,
            "forbidden_paths": self.forbidden_paths,
        }
        limits = self.limits.for_phase("train" if phase == "train" else "infer", self.rules)
        if phase == "null":  # the arena's own model: a slow start under load is no hang
            limits = dataclasses.replace(limits, wall_seconds=max(limits.wall_seconds, 30.0))
        return RunnerProcess(box, spec, limits, self.python, self.sandboxed).start()

    def _run(self, pkg: Package, phase: str, tmp: Path) -> RunOutcome:
        """One sandboxed phase of `pkg`, driven and measured from here: "infer" (single-stream
        queries, timed by this process against a null model) or "train" (train timed from here,
        then one batch of predictions). The outcome's `result` is this process's record."""
        if self.sandboxed:  # no boundary, no evaluation (BoundaryUnavailable says how to fix)
            from . import boundary

            boundary.require(False, "the arena runner")
        if phase == "infer":
            return self._run_infer(pkg, tmp)
        if phase == "train":
            return self._run_train(pkg, tmp)
        raise ValueError(f"unknown phase {phase!r} (infer or train)")

    def _run_train(self, pkg: Package, tmp: Path) -> RunOutcome:
        """train() timed from here (request -> 'trained'), then one batch of predictions on
        the hidden inputs in a fresh random order."""
        rng = np.random.default_rng(secrets.randbits(128))
        proc = self._start(pkg, "train", tmp)
        n = len(self.hidden.labels)
        try:
            _expect_ready(proc)
            nonce = secrets.token_bytes(protocol.NONCE_BYTES)
            body, train_seconds = _exchange(proc, protocol.TRAIN, nonce, protocol.TRAINED,
                                            nonce, "'trained' reply")
            stopped = _decode(proc, lambda: protocol.decode_json(body, "'trained' reply"))
            order = rng.permutation(n)
            nonce = secrets.token_bytes(protocol.NONCE_BYTES)
            payload = nonce + protocol.encode_array(self.hidden.inputs[order])
            proc.seal_output()  # nothing it prints from now on is shown back to it
            body, _ = _exchange(proc, protocol.PREDICT, payload, protocol.ANSWER, nonce,
                                "predictions")
            scores = _decode(proc, lambda: protocol.decode_array(
                body, (n, NUM_CLASSES), protocol.SCORE_DTYPES, "predictions"))
            check_scores(scores, n)
        except _RunnerFailed as failed:
            return failed.finish()
        except PredictionError as exc:
            return proc.finish(error={"kind": exc.kind, "message": f"predict: {exc}"}, checked=True)
        except BaseException:  # a bug here, or Ctrl-C: no runner outlives its evaluation
            proc.abort()
            raise
        labels = np.empty(n, dtype=np.int64)
        labels[order] = scores.argmax(axis=1)  # back in the hidden set's order
        out = proc.finish(complete=True)
        if out.ok:
            out.result = {
                "labels": labels.tolist(),
                "train_seconds": train_seconds,
                "stopped": str(stopped.get("stopped", ""))[:40],
            }
        return out

    def _run_infer(self, pkg: Package, tmp: Path) -> RunOutcome:
        """MLPerf single-stream, timed by this process across the boundary: one query at a
        time, each answer echoing its query's nonce, the next query only after the answer.
        Pass 1 sends every hidden input once in a fresh random order (its answers are scored);
        passes 2.. send each with fresh noise (no query repeats verbatim), and count toward the
        latency only if their answers agree with pass 1's (`min_agreement`). A null model in
        the same kind of sandbox gets the same queries, interleaved; its p50 is subtracted."""
        rng = np.random.default_rng(secrets.randbits(128))
        team = self._start(pkg, "infer", tmp)
        null = self._start(None, "null", tmp) if self.limits.calibrate else None
        procs = [team] + ([null] if null is not None else [])
        h, lim = self.hidden, self.limits
        n = len(h.labels)
        times: dict[int, list[list[float]]] = {id(p): [] for p in procs}
        first = np.empty(n, dtype=np.int64)
        agree = [0] * lim.repeats  # per pass: answers whose class agrees with pass 1's
        warm = _datasets.load_digits("val")[0]
        try:
            for p in procs:
                _expect_ready(p)
            picks = rng.permutation(len(warm))  # no warm-up input twice (up to 180 of them)
            for k in range(lim.warmup):
                x = warm[picks[k % len(warm)]][None, :]
                for p in procs:
                    _ask(p, x, k)
            query = lim.warmup
            team.seal_output()  # nothing it prints from now on is shown back to it
            for r in range(lim.repeats):
                order = rng.permutation(n)
                xs = h.inputs[order]
                if r > 0:
                    noise = rng.normal(0.0, lim.perturbation, xs.shape).astype(np.float32)
                    xs = xs + noise
                for p in procs:
                    times[id(p)].append([])
                for k, i in enumerate(order):
                    x = xs[k : k + 1]  # (1, 64): one query, alone
                    for p in (procs if rng.random() < 0.5 else procs[::-1]):
                        scores, seconds = _ask(p, x, query)
                        times[id(p)][-1].append(seconds * 1e3)
                        if p is team:
                            label = int(scores.argmax())
                            if r == 0:
                                first[i] = label
                            else:
                                agree[r] += int(label == first[i])
                    query += 1
        except _RunnerFailed as failed:
            if failed.proc is null:
                team.finish(violation="stopped: the arena's null model failed")
                raise ArenaFailure(f"the arena's null model failed: {failed.describe()}") from None
            if null is not None:
                null.finish(complete=True)
            return failed.finish()
        except PredictionError as exc:
            if null is not None:
                null.finish(complete=True)
            return team.finish(error={"kind": exc.kind, "message": f"predict: {exc}"}, checked=True)
        except BaseException:  # a bug here, or Ctrl-C: no runner outlives its evaluation
            for p in procs:
                p.abort()
            raise
        null_out = null.finish(complete=True) if null is not None else None
        out = team.finish(complete=True)
        if null_out is not None and not null_out.ok:
            raise ArenaFailure(f"the arena's null model failed: {null_out.message}")
        if out.ok:
            agreement = [1.0] + [float(a / n) for a in agree[1:]]
            counted = [bool(r == 0 or a >= lim.min_agreement) for r, a in enumerate(agreement)]
            out.result = latency_record(times[id(team)],
                                        times[id(null)] if null is not None else None, counted)
            out.result.update(
                labels=first.tolist(),
                consistency=min(agreement[1:]) if lim.repeats > 1 else None,
                agreement=agreement,
                queries=n,
                warmup=lim.warmup,
                perturbation=lim.perturbation,
                base_rss_kb=int(null_out.peak_rss_kb) if null_out is not None else 0,
            )
        return out

    def _run_all(self, pkg: Package, tmp: Path, timings: dict | None = None) -> dict:
        runs: dict[str, RunOutcome] = {}
        timings = {} if timings is None else timings
        for phase in ([] if pkg.problems else ["infer", "train"]):
            t0 = time.perf_counter()
            runs[phase] = self._run(pkg, phase, tmp)
            timings[phase] = time.perf_counter() - t0
            if not runs[phase].ok:
                break
        return self.evaluation(pkg, runs)

    def evaluation(self, pkg: Package, runs: dict[str, RunOutcome]) -> dict:
        """The stored evaluation of `pkg` from its sandboxed runs ({"infer": ..., "train": ...};
        they may come from other machines, tito/arena/cluster.py). Scored here: only this
        process holds the labels."""
        ev = {
            "status": "ok",
            "error": "",
            "acc_public": None,
            "acc_private": None,
            "speed_acc_public": None,
            "speed_acc_private": None,
            "train_seconds": None,
            "latency_p50_ms": None,
            "latency_p90_ms": None,
            "latency_passes": [],
            "model_bytes": None,
            "peak_rss_kb": None,
            "base_rss_kb": None,
            "machine": describe_machine(self.cpu),
            "output_head": "",
            "measurement": {},
        }
        # every reason and output is shown to others: no absolute path of this machine in them
        roots = self.public_roots
        if pkg.problems:
            ev["status"] = "malformed"
            ev["error"] = public_text("; ".join(pkg.problems), roots)[:2000]
            return ev
        for phase, label in (("infer", "inference run"), ("train", "training run")):
            run = runs[phase]
            if run.stdout_head:
                ev["output_head"] += f"[{label}]\n{public_text(run.stdout_head, roots)}\n"
            if not run.ok:
                ev["status"] = run.kind
                ev["error"] = f"{label}: {public_text(run.message, roots)}"
                ev["peak_rss_kb"] = run.peak_rss_kb
                return ev
        if isinstance(runs["infer"].extra, dict) and runs["infer"].extra.get("machine"):
            ev["machine"] = dict(runs["infer"].extra["machine"])  # where latency was measured
        infer, train = runs["infer"].result, runs["train"].result
        h = self.hidden
        ev["acc_public"], ev["acc_private"] = split_accuracies(
            np.array(infer["labels"]), h.labels, h.public_idx, h.private_idx
        )
        ev["speed_acc_public"], ev["speed_acc_private"] = split_accuracies(
            np.array(train["labels"]), h.labels, h.public_idx, h.private_idx
        )
        ev["train_seconds"] = float(train["train_seconds"])
        ev["latency_p50_ms"] = float(infer["p50_ms"])
        ev["latency_p90_ms"] = float(infer["p90_ms"])
        ev["latency_passes"] = [float(v) for v in infer["repeats_p50_ms"]]
        ev["model_bytes"] = int(pkg.model_bytes)
        ev["peak_rss_kb"] = int(runs["infer"].peak_rss_kb)
        ev["base_rss_kb"] = int(infer.get("base_rss_kb") or 0)
        ev["machine"]["limits"] = self.limits.for_phase("infer", self.rules).as_dict()
        # how the numbers above were measured, all by the harness (docs/grading.md)
        ev["measurement"] = {
            "timed_by": "harness",
            "latency_raw": infer["raw"],
            "latency_null": infer["null"],
            "first_pass_p50_ms": infer["first_pass_p50_ms"],
            "repeats_p90_ms": infer["repeats_p90_ms"],
            "consistency": infer["consistency"],
            "agreement": infer["agreement"],
            "passes_counted": infer["passes_counted"],
            "min_agreement": self.limits.min_agreement,
            "queries_per_pass": infer["queries"],
            "warmup": infer["warmup"],
            "perturbation": infer["perturbation"],
            "resolution_ms": RESOLUTION_MS,
            "train_stopped": train.get("stopped", ""),
        }
        return ev


class ArenaFailure(RuntimeError):
    """The arena itself failed (its null model, not the submission): nothing is recorded."""


class _RunnerFailed(Exception):
    """A runner stopped answering: its own error frame, a protocol violation, a closed
    channel or the wall-time limit (the process's flags say which)."""

    def __init__(self, proc: RunnerProcess, *, error: dict | None = None, violation: str = "",
                 closed: bool = False):
        super().__init__(violation or (error or {}).get("message") or "stopped")
        self.proc, self.error, self.violation, self.closed = proc, error, violation, closed

    def finish(self) -> RunOutcome:
        return self.proc.finish(error=self.error, violation=self.violation, closed=self.closed)

    def describe(self) -> str:
        out = self.finish()
        return f"{out.kind}: {out.message}"


def _exchange(proc: RunnerProcess, kind: bytes, payload: bytes, want: bytes, nonce: bytes,
              what: str) -> tuple[bytes, float]:
    """Send one request, wait for its answer -> (the answer after its nonce, seconds from
    the request to the answer on this process's clock)."""
    try:
        start = time.perf_counter()
        proc.send(kind, payload)
        got, reply = proc.receive()
        seconds = time.perf_counter() - start
        if got == protocol.ERROR:
            raise _RunnerFailed(proc, error=protocol.decode_json(reply, "error report"))
        if got != want:
            raise protocol.ProtocolError(f"it sent a {got!r} frame where the {what} was due")
        return protocol.split_nonce(reply, nonce, what), seconds
    except protocol.ChannelClosed:
        raise _RunnerFailed(proc, closed=True) from None
    except protocol.Timeout:
        raise _RunnerFailed(proc) from None  # the process's timeout flag is set
    except protocol.ProtocolError as exc:
        raise _RunnerFailed(proc, violation=str(exc)) from None


def _decode(proc: RunnerProcess, read):
    try:
        return read()
    except protocol.ProtocolError as exc:
        raise _RunnerFailed(proc, violation=str(exc)) from None


def _expect_ready(proc: RunnerProcess) -> None:
    try:
        kind, payload = proc.receive()
    except protocol.ChannelClosed:
        raise _RunnerFailed(proc, closed=True) from None
    except protocol.Timeout:
        raise _RunnerFailed(proc) from None
    except protocol.ProtocolError as exc:
        raise _RunnerFailed(proc, violation=str(exc)) from None
    if kind == protocol.ERROR:
        error = _decode(proc, lambda: protocol.decode_json(payload, "error report"))
        raise _RunnerFailed(proc, error=error)
    if kind != protocol.READY:
        raise _RunnerFailed(proc, violation=f"it sent a {kind!r} frame before it was ready")


def _ask(proc: RunnerProcess, x: np.ndarray, query: int) -> tuple[np.ndarray, float]:
    """One single-stream query -> (its checked (1, 10) scores, seconds to the answer)."""
    nonce = secrets.token_bytes(protocol.NONCE_BYTES)
    payload = nonce + protocol.encode_array(np.ascontiguousarray(x, dtype=np.float32))
    what = f"answer to query {query}"
    body, seconds = _exchange(proc, protocol.QUERY, payload, protocol.ANSWER, nonce, what)
    scores = _decode(proc, lambda: protocol.decode_array(
        body, (1, NUM_CLASSES), protocol.SCORE_DTYPES, what))
    check_scores(scores, 1, query=query)
    return scores, seconds


RESOLUTION_MS = 0.001  # calibrated latencies below this (as fast as the null model) read as it


def latency_record(team: list[list[float]], null: list[list[float]] | None,
                   counted: list[bool] | None = None) -> dict:
    """Per-pass single-stream times (ms, measured here) of the team and of the null model ->
    the latency record: calibrated p50/p90 (team minus the null model's p50, per pass, floored
    at RESOLUTION_MS), their medians over the `counted` passes (default all; pass 1 always
    counts), and the raw and null numbers of every pass beside."""
    counted = [True] * len(team) if counted is None else list(counted)
    counted[0] = True
    raw50 = [percentile(p, 50) for p in team]
    raw90 = [percentile(p, 90) for p in team]
    null50 = [percentile(p, 50) for p in null] if null else [0.0] * len(team)
    null90 = [percentile(p, 90) for p in null] if null else [0.0] * len(team)
    cal50 = [max(RESOLUTION_MS, a - b) for a, b in zip(raw50, null50)]
    cal90 = [max(RESOLUTION_MS, a - b) for a, b in zip(raw90, null50)]
    use50 = [v for v, c in zip(cal50, counted) if c]
    use90 = [v for v, c in zip(cal90, counted) if c]
    return {
        "p50_ms": statistics.median(use50),
        "p90_ms": statistics.median(use90),
        "repeats_p50_ms": use50,
        "repeats_p90_ms": use90,
        "passes_counted": counted,
        "first_pass_p50_ms": cal50[0],
        "all_passes_p50_ms": cal50,
        "raw": {"p50_ms": statistics.median(raw50), "p90_ms": statistics.median(raw90),
                "passes_p50_ms": raw50, "passes_p90_ms": raw90,
                "spread": max(raw50) / min(raw50)},
        "null": None if not null else {
            "p50_ms": statistics.median(null50), "p90_ms": statistics.median(null90),
            "passes_p50_ms": null50, "spread": max(null50) / min(null50)},
    }


def entry_from_evaluation(pkg: Package, ev: dict, submission_id: int = 0) -> Entry:
    """The leaderboard's view of one evaluation (`Evaluator.evaluation`) of `pkg`."""
    meta = pkg.meta if isinstance(pkg.meta, dict) else {}
    tags = meta.get("tags") if isinstance(meta.get("tags"), list) else []
    return Entry(
        team=pkg.team,
        submission_id=submission_id,
        status=ev["status"],
        error=ev["error"],
        acc_public=ev["acc_public"],
        acc_private=ev["acc_private"],
        speed_acc_public=ev["speed_acc_public"],
        speed_acc_private=ev["speed_acc_private"],
        train_seconds=ev["train_seconds"],
        latency_p50_ms=ev["latency_p50_ms"],
        latency_p90_ms=ev["latency_p90_ms"],
        model_bytes=ev["model_bytes"],
        peak_rss_kb=ev["peak_rss_kb"],
        category=str(meta.get("category") or "")[:40],
        tags=tuple(str(t)[:32] for t in tags[:10]),
    )
