"""Forging the arena's measurements, each tried by a package of our own (issue 17, part 2).

The runner shares its process with the team's code, so everything it could say is forgeable:
these packages forge a result record on the answer descriptor, a whole stream of framed
answers ahead of the queries, replay an earlier answer (nonces captured by patching the
runner's own reader), patch every clock they can reach (`time.perf_counter`, `time.monotonic`,
`single_stream.__kwdefaults__`, module globals), memoise answers by input (exactly and
rounded to the digits' grid) after looking for the inputs on disk, report a failure whose
status and text try to break the live page's script, and look for the hidden labels on every
file they can see. Each must end with nothing gained: failed with the reason stated, or
measured as what it really costs. Then the leaderboard itself: a row altered, inserted, copied
from another team's evaluation, removed, an award inserted -- `tito competition check` names
each (exit 1).
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import shutil
import sqlite3
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from tinytorch.arena import build_package
from tinytorch.arena.harness import ArenaLimits, HiddenSet
from tinytorch.competition import CATEGORIES, ERROR_KINDS, CompetitionRules
from tinytorch.datasets import load_digits
from tito.arena import Arena
from tito.arena.html import render_page
from tito.cli import main

pytestmark = pytest.mark.slow

SOURCE = """
import os, sys, time
from tinytorch.competition import CompetitionSubmission

_REAL = time.perf_counter  # bound before any tampering


def _busy(seconds):
    end = _REAL() + seconds
    while _REAL() < end:
        pass


def _in_runner():
    return sys.argv[0].endswith(os.path.join("arena", "runner.py"))


class Attack(CompetitionSubmission):
    team = {team!r}
    tags = ("test",)
    description = "a security test package"
    hidden, max_epochs = 8, 1
{body}
"""

SLOW = """
    def predict(self, x):
        _busy(0.003)  # a model that really costs 3 ms per query
        return super().predict(x)
"""

CLOCK = """
    def __init__(self):
        super().__init__()
        if _in_runner():
            self.tamper()

    def tamper(self):
        import tinytorch.competition as tc
        fake = lambda: 0.0  # noqa: E731
        time.perf_counter = time.monotonic = time.time = time.process_time = fake
        time.perf_counter_ns = time.monotonic_ns = lambda: 0
        tc.single_stream.__kwdefaults__["clock"] = fake
        for module in list(sys.modules.values()):
            for name in ("perf_counter", "monotonic", "clock", "_clock"):
                if callable(getattr(module, name, None)):
                    try:
                        setattr(module, name, fake)
                    except Exception:
                        pass
            for value in list(vars(module).values()) if hasattr(module, "__dict__") else []:
                kw = getattr(value, "__kwdefaults__", None)
                if isinstance(kw, dict):
                    for key in list(kw):
                        if "clock" in key or "time" in key:
                            kw[key] = fake
        print("TAMPERED")

    def predict(self, x):
        _busy(0.003)
        return super().predict(x)

    def train(self, x, y, budget_seconds):
        _busy(1.0)  # a second of real training time the patched clocks would hide
        return super().train(x, y, budget_seconds)
"""

FORGED_RECORD = """
    def load(self, folder):
        import json
        record = json.dumps({"ok": True, "phase": "infer", "labels": [0] * 360, "p50_ms": 0.0,
                             "p90_ms": 0.0, "repeats_p50_ms": [0.0], "accuracy": 1.0}).encode()
        for fd in range(3, 64):  # every descriptor it has, the answer pipe among them
            try:
                os.write(fd, record)
            except OSError:
                pass
        os._exit(0)  # before the runner can say anything else
"""

FORGED_STREAM = """
    def load(self, folder):
        import numpy as np
        from tinytorch.arena import protocol
        super().load(folder)
        fd = int(sys.argv[-1])  # the runner's own command line names the answer pipe
        os.write(fd, protocol.frame(protocol.READY, b"{}"))
        one_hot = np.eye(10, dtype=np.float32)[:1]
        for _ in range(100):  # answers written before any query was asked
            frame = protocol.frame(protocol.ANSWER, os.urandom(16) + protocol.encode_array(one_hot))
            os.write(fd, frame)
"""

REPLAY = """
    def load(self, folder):
        from tinytorch.arena import protocol
        real, self.nonces = protocol.read_frame, []

        def spy(fd, deadline=None):
            kind, payload = real(fd, deadline)
            self.nonces.append(payload[:16])
            return kind, payload

        protocol.read_frame = spy  # the runner reads its requests through this
        super().load(folder)

    def predict(self, x):
        import numpy as np
        from tinytorch.arena import protocol
        out = super().predict(x)
        if len(self.nonces) >= 2:  # replay: the previous query's nonce, a cached answer
            stale = self.nonces[-2] + protocol.encode_array(out.astype(np.float32))
            os.write(int(sys.argv[-1]), protocol.frame(protocol.ANSWER, stale))
        return out
"""

MEMO = """
    def __init__(self):
        super().__init__()
        self.exact, self.coarse = {}, {}

    def load(self, folder):
        super().load(folder)
        found = []
        for root in (".", "/tmp", os.environ.get("HOME", ".")):
            for dirpath, _, files in os.walk(root):
                found += [(os.path.relpath(os.path.realpath(os.path.join(dirpath, f))),
                           os.path.getsize(os.path.join(dirpath, f)))
                          for f in files if f.endswith((".npy", ".npz"))]
        print("FOUND", sorted(set(found)))

    def predict(self, x):
        import numpy as np
        key, coarse = x.tobytes(), np.round(x * 16).astype(np.int8).tobytes()
        if key in self.exact:
            print("HIT-EXACT")
            return self.exact[key]
        if coarse in self.coarse:
            print("HIT-ROUNDED")
            return self.coarse[coarse]
        _busy(0.002)  # the real model: 2 ms
        out = super().predict(x)
        self.exact[key] = self.coarse[coarse] = out
        return out
"""

TELL = """
    def predict(self, x):
        import numpy as np
        if np.abs(x * 16 - np.round(x * 16)).max() > 1e-3:  # off the digits' grid: a repeat
            return np.zeros((1, 10), dtype=np.float32)  # unscored, so answer for free
        _busy(0.003)  # the scored pass gets the real 3 ms model
        return super().predict(x)
"""

LEAK = """
    def __init__(self):
        super().__init__()
        self.asked = 0

    def predict(self, x):
        self.asked += 1
        if self.asked == 1 or self.asked > 10:  # the first warm-up query, then the hidden ones
            print("LEAK", x.astype("<f4").tobytes().hex(), flush=True)  # (2 KiB are kept)
        if self.asked == 40:  # after the warm-up: a hidden input, carried out in the reason
            raise ValueError("EXFIL " + x.astype("<f4").tobytes().hex())
        return super().predict(x)
"""

STATUS_TEXT = "</script><script>document.title='pwned'</script><!--<script>\"'&amp;\u2028x"
FORGED_STATUS = f"""
    def load(self, folder):
        import json
        from tinytorch.arena import protocol
        text = {STATUS_TEXT!r}
        body = json.dumps({{"kind": text, "message": text, "stage": text}}).encode()
        os.write(int(sys.argv[-1]), protocol.frame(protocol.ERROR, body))
        os._exit(0)
"""

LABEL_SPY = """
    def walk(self, phase):
        import hashlib
        import numpy as np
        if not _in_runner():  # not while the test builds the package
            return
        seen = 0
        for dirpath, dirnames, files in os.walk("/"):
            dirnames[:] = [d for d in dirnames if f"{dirpath}/{d}".lstrip("/").split("/")[0]
                           not in ("proc", "sys", "dev")]
            for f in files:
                seen += 1
                if not f.endswith((".npy", ".npz")) or f == "digits.npz":
                    continue  # the bundled digits: masked, and reading it ends the run (see
                    # test_arena_escapes.py for what it holds from below the audit hook)
                path = os.path.join(dirpath, f)
                try:
                    data = np.load(path, allow_pickle=False)
                    arrays = [data[k] for k in data.files] if hasattr(data, "files") else [data]
                except Exception:
                    continue
                for a in arrays:
                    if a.ndim >= 1 and 360 in a.shape:
                        flat = np.asarray(a).reshape(-1).astype(np.int64)
                        print("ARR", phase, hashlib.sha256(flat.tobytes()).hexdigest()[:16])
        print("WALKED", phase, seen)

    def load(self, folder):
        self.walk("infer")
        super().load(folder)

    def train(self, x, y, budget_seconds):
        self.walk("train")
        return super().train(x, y, budget_seconds)
"""

# three arenas, so that no single test waits for every package (each fixture: a few packages)
CHANNEL = {"honest": "", "forged-record": FORGED_RECORD, "forged-stream": FORGED_STREAM,
           "replay": REPLAY, "forged-status": FORGED_STATUS}
MEASURE = {"honest-slow": SLOW, "clock": CLOCK, "memo": MEMO, "tell": TELL}
SPY = {"label-spy": LABEL_SPY, "leak": LEAK}


def package(work: Path, team: str, body: str) -> Path:
    src = work / f"{team}-src"
    src.mkdir(parents=True)
    (src / "submission.py").write_text(SOURCE.format(team=team, body=body))
    return build_package(src, work / team, check=False)


def evaluate_all(factory, name: str, attacks: dict) -> dict:
    work = factory.mktemp(f"arena-{name}")
    arena = Arena(
        work / "arena",
        rules=CompetitionRules(daily_limit=20, target_accuracy=0.5),
        limits=ArenaLimits(repeats=2, warmup=10, wall_seconds=20),
    )
    outcomes = {team: arena.evaluate(package(work, team, body)) for team, body in attacks.items()}
    rows = {r["team"]: r for r in arena.store.rows()}
    return {"work": work, "arena": arena, "outcomes": outcomes, "rows": rows}


@pytest.fixture(scope="module")
def channel(tmp_path_factory):
    return evaluate_all(tmp_path_factory, "channel", CHANNEL)


@pytest.fixture(scope="module")
def measure(tmp_path_factory):
    return evaluate_all(tmp_path_factory, "measure", MEASURE)


@pytest.fixture(scope="module")
def spy(tmp_path_factory):
    return evaluate_all(tmp_path_factory, "spy", SPY)


def unranked_everywhere(arena, team):
    board = arena.standings()
    return all(s.rank is None for cat in CATEGORIES for s in board[cat] if s.team == team)


def test_the_honest_package_is_measured_and_ranked(channel):
    row = channel["rows"]["honest"]
    assert row["status"] == "ok", row["error"]
    m = row["measurement"]
    assert m["timed_by"] == "harness" and m["latency_null"]["p50_ms"] > 0
    assert row["latency_p50_ms"] <= m["latency_raw"]["p50_ms"]
    assert not unranked_everywhere(channel["arena"], "honest")
    assert channel["arena"].problems() == []


@pytest.mark.parametrize(
    "team, pattern",
    [
        ("forged-record", r"broke the arena's request/answer protocol: a frame of unknown kind"),
        ("forged-stream", r"broke the arena's request/answer protocol: .*forged or replayed"),
        ("replay", r"broke the arena's request/answer protocol: the answer to query \d+ carries "
                   r"nonce [0-9a-f]{32}, not the [0-9a-f]{32} .*\(a forged or replayed answer\)"),
    ],
)
def test_forged_and_replayed_answers_fail_with_the_reason(channel, team, pattern):
    row = channel["rows"][team]
    assert row["status"] == "crash" and re.search(pattern, row["error"]), row["error"]
    assert row["acc_public"] is None and row["latency_p50_ms"] is None
    assert unranked_everywhere(channel["arena"], team)


def test_tampered_clocks_change_nothing_measured_outside(measure):
    rows = measure["rows"]
    clock, honest = rows["clock"], rows["honest-slow"]
    assert honest["status"] == "ok" and honest["latency_p50_ms"] >= 2.5  # 3 ms, seen outside
    assert measure["arena"].problems() == []
    assert clock["status"] == "ok", clock["error"]
    assert "TAMPERED" in clock["output_head"]  # the patches really ran in the runner
    # the same 3 ms model as honest-slow: the harness's clock sees what it costs
    assert clock["latency_p50_ms"] >= 2.5 and clock["latency_p90_ms"] >= 2.5
    assert clock["latency_p50_ms"] >= 0.7 * honest["latency_p50_ms"]
    assert clock["train_seconds"] >= 1.0  # the hidden second of training is counted


def test_memoised_answers_never_hit_and_the_inputs_are_not_on_disk(measure):
    row = measure["rows"]["memo"]
    assert row["status"] == "ok", row["error"]
    out = row["output_head"]
    found = ast.literal_eval(re.search(r"FOUND (\[.*\])", out).group(1))
    names = {path for path, _ in found}
    assert "submission/weights/weights.npz" in names, found
    # no inputs to precompute: no file of them, and the bundled test data (wherever the
    # installed package happens to be visible: a checkout under /tmp is) is an empty stand-in
    assert not any(Path(p).name.startswith("inputs") for p in names), found
    digits = [size for path, size in found if Path(path).name == "digits.npz"]
    assert all(size == 0 for size in digits), found
    # no query repeats, exactly or on the digits' grid: every answer paid for the 2 ms model
    # (its "HIT" prints, after the hidden inputs were sent, are not shown back: see LEAK)
    assert row["latency_p50_ms"] >= 1.5
    m = row["measurement"]
    assert m["perturbation"] > 0 and m["consistency"] > 0.8
    assert m["queries_per_pass"] == 360


def test_cheap_answers_to_the_unscored_passes_do_not_count(measure):
    """The perturbed repeats are not scored for accuracy, and a team can tell them apart (off
    the grid): answering them for free must not lower the latency."""
    row, honest = measure["rows"]["tell"], measure["rows"]["honest-slow"]
    assert row["status"] == "ok", row["error"]
    m = row["measurement"]
    assert m["passes_counted"] == [True, False] and m["agreement"][1] < 0.5, m
    assert row["latency_passes"] == [m["first_pass_p50_ms"]]
    assert row["latency_p50_ms"] >= 2.5 and row["latency_p50_ms"] >= 0.7 * honest["latency_p50_ms"]
    assert honest["measurement"]["passes_counted"] == [True, True]


def test_a_forged_status_is_no_status_and_cannot_break_the_page(channel):
    arena, row = channel["arena"], channel["rows"]["forged-status"]
    assert row["status"] == "crash"
    assert row["error"].startswith("inference run: reported an unknown failure kind")
    assert "</script>" in row["error"]  # kept as text, the team's own reason
    assert all(r["status"] == "ok" or r["status"] in ERROR_KINDS for r in arena.store.rows())
    for live in (False, True):
        page = render_page(arena, live=live)
        scripts = ScriptCollector.collect(page)
        assert [s["id"] for s in scripts] == ["leaderboard-data", None], scripts
        data = json.loads(scripts[0]["text"])
        teams = {s["team"] for s in data["standings"]["speed"]}
        assert "forged-status" in teams and "honest" in teams
        assert "pwned" not in scripts[1]["text"]
        assert "&lt;/script&gt;&lt;script&gt;document.title=&#x27;pwned&#x27;" in page


def test_the_hidden_labels_are_on_no_file_any_phase_can_read(spy):
    row = spy["rows"]["label-spy"]
    assert row["status"] == "ok", row["error"]
    out = row["output_head"]
    walked = {m[0]: int(m[1]) for m in re.findall(r"WALKED (\w+) (\d+)", out)}
    assert set(walked) == {"infer", "train"} and min(walked.values()) > 100, out
    rules = spy["arena"].rules
    hidden = HiddenSet.from_digits(rules)
    digests = {
        hashlib.sha256(np.asarray(y, dtype=np.int64).tobytes()).hexdigest()[:16]
        for y in (hidden.labels, load_digits("test")[1])
    }
    seen = set(re.findall(r"ARR \w+ ([0-9a-f]{16})", out))
    assert not (seen & digests), "a file the runner can read holds the hidden labels"


def test_nothing_printed_or_raised_after_the_hidden_inputs_is_shown_back(spy):
    row = spy["rows"]["leak"]
    assert row["status"] == "crash" and "EXFIL" in row["error"], row["error"]
    assert "[cut: after the hidden inputs were sent" in row["error"]
    assert len(row["error"]) < 300
    assert "LEAK" in row["output_head"]  # the warm-up's (validation) inputs: printed, shown
    hidden = HiddenSet.from_digits(spy["arena"].rules).inputs
    warm = {r.astype("<f4").tobytes().hex() for r in load_digits("val")[0]}
    printed = set(re.findall(r"LEAK ([0-9a-f]{512})", row["output_head"]))
    assert printed and printed <= warm  # only warm-up inputs, printed before the first query
    assert not printed & {r.astype("<f4").tobytes().hex() for r in hidden}


# ------------------------------------------------------------------- the leaderboard itself
class ScriptCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.scripts, self.current = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.current = {"id": dict(attrs).get("id"), "text": ""}

    def handle_data(self, data):
        if self.current is not None:
            self.current["text"] += data

    def handle_endtag(self, tag):
        if tag == "script" and self.current is not None:
            self.scripts.append(self.current)
            self.current = None

    @classmethod
    def collect(cls, page: str) -> list[dict]:
        parser = cls()
        parser.feed(page)
        return parser.scripts


def copy_arena(arena, dest: Path) -> Path:
    dest.mkdir()
    target = dest / "leaderboard.sqlite"
    with sqlite3.connect(arena.store.path) as src, sqlite3.connect(target) as d:
        src.backup(d)
    shutil.copy(arena.store.key_path, dest / "leaderboard.key")
    return dest


def check(root: Path, capsys) -> tuple[int, str]:
    code = main(["competition", "check", "--arena", str(root)])
    return code, capsys.readouterr().out


def sid(rows, team) -> int:
    return rows[team]["submission_id"]


def test_check_passes_on_the_arena_the_harness_wrote(channel, capsys):
    code, out = check(channel["arena"].root, capsys)
    assert code == 0 and "0 problems" in out, out


def test_an_altered_row_is_named(channel, tmp_path, capsys):
    root = copy_arena(channel["arena"], tmp_path / "altered")
    n = sid(channel["rows"], "honest")
    with sqlite3.connect(root / "leaderboard.sqlite") as con:
        con.execute("UPDATE evaluations SET latency_p50_ms = 0.002, latency_passes = '[0.002]' "
                    "WHERE submission_id = ?", (n,))
    code, out = check(root, capsys)
    assert code == 1
    assert f"problem: row {n} (team honest) does not match its digest" in out, out
    assert out.count("does not match its digest") == 1  # the rows after it still verify


def test_a_row_inserted_without_an_evaluation_is_named(channel, tmp_path, capsys):
    root = copy_arena(channel["arena"], tmp_path / "inserted")
    with sqlite3.connect(root / "leaderboard.sqlite") as con:
        honest = con.execute(
            "SELECT * FROM evaluations WHERE submission_id = ?",
            (sid(channel["rows"], "honest"),),
        ).fetchone()
        cur = con.execute(
            "INSERT INTO submissions (team, package_hash, source, day, submitted_at) VALUES "
            "('ghost', ?, 'x', '2026-01-01', 'now')", ("e" * 64,)
        )
        values = list(honest)
        values[0] = cur.lastrowid
        values[-1] = None  # no digest: nobody but the harness has the key
        con.execute(f"INSERT INTO evaluations VALUES ({', '.join('?' * len(values))})", values)
        ghost = cur.lastrowid
    code, out = check(root, capsys)
    assert code == 1
    assert f"row {ghost} (team ghost) carries no digest: no evaluation of this arena" in out
    assert "chain ends at" in out


def test_a_replayed_evaluation_record_is_named(channel, tmp_path, capsys):
    """Another team's ok evaluation, digest and all, copied onto the forger's failed row."""
    rows = channel["rows"]
    root = copy_arena(channel["arena"], tmp_path / "replayed")
    src, dst = sid(rows, "honest"), sid(rows, "forged-record")
    with sqlite3.connect(root / "leaderboard.sqlite") as con:
        cols = [r[1] for r in con.execute("PRAGMA table_info(evaluations)")][1:]
        sets = ", ".join(f"{c} = (SELECT {c} FROM evaluations WHERE submission_id = ?)"
                         for c in cols)
        con.execute(f"UPDATE evaluations SET {sets} WHERE submission_id = ?",
                    [src] * len(cols) + [dst])
    code, out = check(root, capsys)
    assert code == 1
    assert f"row {dst} (team forged-record) does not match its digest" in out, out
    # the same record in another arena (another key) does not verify either
    other = Arena(tmp_path / "other-arena")
    assert other.store.key_path.read_text() != channel["arena"].store.key_path.read_text()


def test_a_removed_row_and_an_inserted_award_are_named(channel, tmp_path, capsys):
    rows = channel["rows"]
    root = copy_arena(channel["arena"], tmp_path / "removed")
    last = max(r["submission_id"] for r in rows.values())
    with sqlite3.connect(root / "leaderboard.sqlite") as con:
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("DELETE FROM submissions WHERE id = ?", (last,))
        con.execute("INSERT INTO awards (team, points, reason, awarded_at) VALUES "
                    "('replay', 100, 'self-awarded', 'now')")
    code, out = check(root, capsys)
    assert code == 1
    assert f"signed evaluations but the database holds {len(rows) - 1}" in out, out
    assert "award 1 (team replay) does not match its digest" in out
