"""The leaderboard database: SQLite, one file, WAL so readers never block the evaluator.

Tables:
- `meta`: schema version, the competition rules (JSON), a generation counter that every write
  transaction increments (the live page long-polls it).
- `submissions`: one row per distinct package (UNIQUE package_hash): team, UTC day, metadata.
- `evaluations`: exactly one row per submission (PRIMARY KEY = submission_id): status ("ok" or
  an ERROR_KINDS key), the error text, the metrics, how they were measured (`measurement`),
  and `digest`: HMAC-SHA256 with the arena's key over the submission + evaluation row and the
  previous row's digest (a chain; `meta.chain` holds its signed head).
- `awards`: innovation points an instructor gave a team, with the reason (and a digest).

Only the trusted process writes (the harness; runners never see the arena's folder). The key
(`leaderboard.key`, 0600, next to the database) never leaves that folder. Writes happen in
`BEGIN IMMEDIATE` transactions, so two evaluators cannot both pass the daily-limit check or
insert the same package twice. `problems()` runs `PRAGMA integrity_check`, `PRAGMA
foreign_key_check`, the invariants the harness promises and `digest_problems()`: a row that no
evaluation produced, or that was altered, is named.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from tinytorch.competition import ERROR_KINDS, CompetitionRules, Entry

SCHEMA_VERSION = 2  # 2: measurement + digest columns (added to a version 1 file on open)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    team TEXT NOT NULL CHECK (length(team) BETWEEN 1 AND 40),
    package_hash TEXT NOT NULL UNIQUE CHECK (length(package_hash) = 64),
    source TEXT NOT NULL,
    day TEXT NOT NULL CHECK (day GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'),
    submitted_at TEXT NOT NULL,
    category TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '[]',
    description TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS submissions_team_day ON submissions (team, day);
CREATE TABLE IF NOT EXISTS evaluations (
    submission_id INTEGER PRIMARY KEY REFERENCES submissions (id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    acc_public REAL CHECK (acc_public IS NULL OR acc_public BETWEEN 0 AND 1),
    acc_private REAL CHECK (acc_private IS NULL OR acc_private BETWEEN 0 AND 1),
    speed_acc_public REAL CHECK (speed_acc_public IS NULL OR speed_acc_public BETWEEN 0 AND 1),
    speed_acc_private REAL CHECK (speed_acc_private IS NULL OR speed_acc_private BETWEEN 0 AND 1),
    train_seconds REAL CHECK (train_seconds IS NULL OR train_seconds >= 0),
    latency_p50_ms REAL CHECK (latency_p50_ms IS NULL OR latency_p50_ms > 0),
    latency_p90_ms REAL CHECK (latency_p90_ms IS NULL OR latency_p90_ms >= latency_p50_ms),
    latency_passes TEXT NOT NULL DEFAULT '[]',
    model_bytes INTEGER CHECK (model_bytes IS NULL OR model_bytes > 0),
    peak_rss_kb INTEGER,
    base_rss_kb INTEGER,
    harness_seconds REAL NOT NULL,
    machine TEXT NOT NULL,
    output_head TEXT NOT NULL DEFAULT '',
    evaluated_at TEXT NOT NULL,
    measurement TEXT NOT NULL DEFAULT '{}',
    digest TEXT,
    CHECK (status = 'ok' OR length(error) > 0)
);
CREATE TABLE IF NOT EXISTS awards (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    team TEXT NOT NULL,
    points REAL NOT NULL,
    reason TEXT NOT NULL CHECK (length(trim(reason)) > 0),
    awarded_at TEXT NOT NULL,
    digest TEXT
);
"""

EVAL_COLUMNS = (
    "status",
    "error",
    "acc_public",
    "acc_private",
    "speed_acc_public",
    "speed_acc_private",
    "train_seconds",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_passes",
    "model_bytes",
    "peak_rss_kb",
    "base_rss_kb",
    "harness_seconds",
    "machine",
    "output_head",
    "evaluated_at",
)
OPTIONAL_COLUMNS = {"measurement": {}}  # evaluation fields with a default
# columns added after version 1: (table, column, declaration)
ADDED_COLUMNS = (
    ("evaluations", "measurement", "TEXT NOT NULL DEFAULT '{}'"),
    ("evaluations", "digest", "TEXT"),
    ("awards", "digest", "TEXT"),
)
OK_METRICS = (
    "acc_public",
    "acc_private",
    "speed_acc_public",
    "speed_acc_private",
    "train_seconds",
    "latency_p50_ms",
    "latency_p90_ms",
    "model_bytes",
)


class SubmissionLimitError(RuntimeError):
    """The team already submitted its daily number of distinct packages."""


class StoreError(RuntimeError):
    pass


class LeaderboardStore:
    """All access to the leaderboard database. Safe to use from several processes."""

    def __init__(self, path: str | Path, rules: CompetitionRules | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            with self._write(con, bump=False):  # opening a leaderboard changes nothing
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        con.execute(statement)
                for table, column, decl in ADDED_COLUMNS:  # a version 1 file
                    have = {r[1] for r in con.execute(f"PRAGMA table_info({table})")}
                    if column not in have:
                        con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
                stored = self._meta(con, "rules")
                if stored is None:
                    rules = rules or CompetitionRules()
                    con.execute(
                        "INSERT INTO meta VALUES ('rules', ?), ('schema_version', ?), "
                        "('generation', '0')",
                        (json.dumps(asdict(rules)), str(SCHEMA_VERSION)),
                    )
                else:
                    existing = CompetitionRules(**json.loads(stored))
                    if rules is not None and rules != existing:
                        raise StoreError(
                            f"{self.path} was created with different rules ({existing}); a "
                            "competition keeps its rules: use a new arena directory"
                        )
                    rules = existing
        self.rules = rules
        self.key_path = self.path.with_name(self.path.stem + ".key")
        self._key = _load_or_create_key(self.key_path)

    # -- connections ------------------------------------------------------------------------
    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA foreign_keys=ON")
            con.execute("PRAGMA busy_timeout=60000")
            yield con
        finally:
            con.close()

    @contextmanager
    def _write(self, con: sqlite3.Connection, bump: bool = True):
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any error); `bump`s the generation."""
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
            if bump:
                con.execute(
                    "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
                )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    @staticmethod
    def _meta(con: sqlite3.Connection, key: str) -> str | None:
        row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    # -- reads ------------------------------------------------------------------------------
    def generation(self) -> int:
        with self._connect() as con:
            return int(self._meta(con, "generation") or 0)

    def find(self, package_hash: str) -> int | None:
        with self._connect() as con:
            row = con.execute(
                "SELECT id FROM submissions WHERE package_hash = ?", (package_hash,)
            ).fetchone()
            return None if row is None else int(row[0])

    def count_for_day(self, team: str, day: str) -> int:
        with self._connect() as con:
            return con.execute(
                "SELECT COUNT(*) FROM submissions WHERE team = ? AND day = ?", (team, day)
            ).fetchone()[0]

    def rows(self) -> list[dict]:
        """Every submission joined with its evaluation, oldest first."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT s.id AS submission_id, s.team, s.package_hash, s.source, s.day, "
                "s.submitted_at, s.category, s.tags, s.description, e.* FROM submissions s "
                "JOIN evaluations e ON e.submission_id = s.id ORDER BY s.id"
            ).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["tags"] = json.loads(d["tags"])
            d["latency_passes"] = json.loads(d["latency_passes"])
            d["machine"] = json.loads(d["machine"])
            d["measurement"] = json.loads(d.get("measurement") or "{}")
            out.append(d)
        return out

    def row(self, submission_id: int) -> dict | None:
        for r in self.rows():
            if r["submission_id"] == submission_id:
                return r
        return None

    def awards(self) -> list[dict]:
        with self._connect() as con:
            return [dict(r) for r in con.execute("SELECT * FROM awards ORDER BY id")]

    def innovation_points(self) -> dict[str, float]:
        with self._connect() as con:
            return {
                r[0]: float(r[1])
                for r in con.execute("SELECT team, SUM(points) FROM awards GROUP BY team")
            }

    def teams(self) -> list[str]:
        with self._connect() as con:
            rows = con.execute("SELECT DISTINCT team FROM submissions ORDER BY team")
            return [r[0] for r in rows]

    def entries(self) -> list[Entry]:
        """The rows as `Entry` objects for the ranking functions (innovation points per team)."""
        points = self.innovation_points()
        return [entry_from_row(r, points.get(r["team"], 0.0)) for r in self.rows()]

    # -- writes -----------------------------------------------------------------------------
    def record(self, submission: dict, evaluation: dict, daily_limit: int) -> tuple[int, bool]:
        """Insert a submission and its evaluation atomically -> (submission id, created).

        The same package hash returns the existing id (created False) and writes nothing.
        Raises SubmissionLimitError if the team reached `daily_limit` that day.
        """
        missing = [c for c in EVAL_COLUMNS if c not in evaluation]
        if missing:
            raise StoreError(f"evaluation lacks {missing}")
        evaluation = {**OPTIONAL_COLUMNS, **evaluation}
        columns = EVAL_COLUMNS + tuple(OPTIONAL_COLUMNS)
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                row = con.execute(
                    "SELECT id FROM submissions WHERE package_hash = ?",
                    (submission["package_hash"],),
                ).fetchone()
                if row is not None:
                    con.execute("ROLLBACK")
                    return int(row[0]), False
                used = con.execute(
                    "SELECT COUNT(*) FROM submissions WHERE team = ? AND day = ?",
                    (submission["team"], submission["day"]),
                ).fetchone()[0]
                if used >= daily_limit:
                    raise SubmissionLimitError(
                        f"team {submission['team']!r} already submitted {used} distinct "
                        f"packages on {submission['day']} (limit {daily_limit} per UTC day)"
                    )
                cur = con.execute(
                    "INSERT INTO submissions (team, package_hash, source, day, submitted_at, "
                    "category, tags, description) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        submission["team"],
                        submission["package_hash"],
                        submission["source"],
                        submission["day"],
                        submission["submitted_at"],
                        submission.get("category") or "",
                        json.dumps(list(submission.get("tags") or [])),
                        submission.get("description") or "",
                    ),
                )
                sid = int(cur.lastrowid)
                values = [evaluation[c] for c in columns]
                values = [json.dumps(v) if isinstance(v, list | dict) else v for v in values]
                con.execute(
                    f"INSERT INTO evaluations (submission_id, {', '.join(columns)}) "
                    f"VALUES (?, {', '.join('?' * len(columns))})",
                    [sid, *values],
                )
                self._sign_evaluation(con, sid)
                con.execute(
                    "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
                )
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
        return sid, True

    def award(self, team: str, points: float, reason: str, awarded_at: str) -> int:
        if isinstance(points, bool) or not (
            isinstance(points, int | float) and math.isfinite(points) and points > 0
        ):
            raise ValueError(
                f"points must be a positive finite number (innovation points are awarded, never "
                f"taken away), got {points!r}"
            )
        if not reason or not reason.strip():
            raise ValueError("an award needs a reason (it is shown publicly)")
        with self._connect() as con, self._write(con):
            known = con.execute("SELECT 1 FROM submissions WHERE team = ?", (team,)).fetchone()
            if known is None:
                raise ValueError(f"no team {team!r} has submitted anything")
            cur = con.execute(
                "INSERT INTO awards (team, points, reason, awarded_at) VALUES (?, ?, ?, ?)",
                (team, float(points), reason.strip(), awarded_at),
            )
            award_id = int(cur.lastrowid)
            con.execute(
                "UPDATE awards SET digest = ? WHERE id = ?",
                (self._mac("award", _award_text(con, award_id)), award_id),
            )
            return award_id

    # -- digests ----------------------------------------------------------------------------
    def _mac(self, *parts: str) -> str:
        return hmac.new(self._key, "\n".join(parts).encode("utf-8"), hashlib.sha256).hexdigest()

    def _sign_evaluation(self, con: sqlite3.Connection, sid: int) -> None:
        """Inside the recording transaction: the row's digest, chained to the previous row's,
        and the signed head of the chain (so a removed last row is noticed too)."""
        prev = con.execute(
            "SELECT digest FROM evaluations WHERE submission_id < ? ORDER BY submission_id DESC "
            "LIMIT 1", (sid,)
        ).fetchone()
        digest = self._mac("evaluation", (prev[0] or "") if prev else "", _row_text(con, sid))
        con.execute("UPDATE evaluations SET digest = ? WHERE submission_id = ?", (digest, sid))
        count = con.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
        head = json.dumps({"count": count, "head": digest,
                           "mac": self._mac("head", str(count), digest)})
        con.execute("INSERT OR REPLACE INTO meta VALUES ('chain', ?)", (head,))

    def digest_problems(self) -> list[str]:
        """Rows no evaluation of this arena produced, or altered since: each row's digest is
        recomputed with the arena's key (HMAC-SHA256 over the row and the previous digest)."""
        out = []
        with self._connect() as con:
            prev = ""
            rows = con.execute(
                "SELECT s.id, s.team, e.digest FROM submissions s JOIN evaluations e "
                "ON e.submission_id = s.id ORDER BY s.id"
            ).fetchall()
            for sid, team, digest in rows:
                where = f"row {sid} (team {team})"
                if not digest:
                    out.append(f"{where} carries no digest: no evaluation of this arena wrote it")
                elif not hmac.compare_digest(
                    digest, self._mac("evaluation", prev, _row_text(con, sid))
                ):
                    out.append(
                        f"{where} does not match its digest: it was altered after its "
                        "evaluation, inserted without one, or a row before it was removed"
                    )
                prev = digest or ""
            chain = self._meta(con, "chain")
            if rows or chain:
                try:
                    head = json.loads(chain or "{}")
                    ok = hmac.compare_digest(
                        str(head.get("mac", "")),
                        self._mac("head", str(head.get("count")), str(head.get("head"))),
                    )
                except (ValueError, AttributeError):
                    ok, head = False, {}
                if not ok:
                    out.append("the signed head of the evaluation chain is missing or altered")
                elif head["count"] != len(rows) or head["head"] != prev:
                    out.append(
                        f"the evaluation chain ends at {head['count']} signed evaluations but "
                        f"the database holds {len(rows)}: rows were removed or added"
                    )
            for (award_id, team, digest) in con.execute(
                "SELECT id, team, digest FROM awards ORDER BY id"
            ).fetchall():
                if not digest or not hmac.compare_digest(
                    digest, self._mac("award", _award_text(con, award_id))
                ):
                    out.append(
                        f"award {award_id} (team {team}) does not match its digest: it was not "
                        "written by `tito competition award` of this arena, or was altered"
                    )
        return out

    # -- checks -----------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Everything wrong with the database: SQLite's checks, then the harness's invariants."""
        out = []
        with self._connect() as con:
            result = [r[0] for r in con.execute("PRAGMA integrity_check")]
            if result != ["ok"]:
                out += [f"integrity_check: {r}" for r in result]
            for r in con.execute("PRAGMA foreign_key_check"):
                out.append(f"foreign_key_check: {tuple(r)}")
            orphans = con.execute(
                "SELECT id FROM submissions WHERE id NOT IN (SELECT submission_id FROM "
                "evaluations)"
            ).fetchall()
            out += [f"submission {r[0]} has no evaluation" for r in orphans]
            limit = self.rules.daily_limit
            for team, day, n in con.execute(
                "SELECT team, day, COUNT(*) FROM submissions GROUP BY team, day"
            ):
                if n > limit:
                    out.append(f"team {team} has {n} submissions on {day} (limit {limit})")
            for r in con.execute("SELECT COUNT(*), MAX(id) FROM submissions"):
                if r[0] and r[1] < r[0]:
                    out.append("submission ids are not increasing")
            for a in con.execute(
                "SELECT id, team FROM awards WHERE team NOT IN (SELECT team FROM submissions)"
            ):
                out.append(f"award {a[0]} names unknown team {a[1]}")
        for r in self.rows():
            sid, status = r["submission_id"], r["status"]
            if status != "ok":
                if status not in ERROR_KINDS:
                    out.append(f"submission {sid}: unknown status {status!r}")
                if not r["error"]:
                    out.append(f"submission {sid}: status {status} without an error message")
                scored = [m for m in ("acc_public", "acc_private") if r[m] is not None]
                if scored:
                    out.append(f"submission {sid}: failed but has scores {scored}")
                continue
            for m in OK_METRICS:
                v = r[m]
                if v is None or (isinstance(v, float) and not math.isfinite(v)):
                    out.append(f"submission {sid}: ok but {m} is {v!r}")
            if r["error"]:
                out.append(f"submission {sid}: ok but has an error message")
            passes = r["latency_passes"]
            if not passes or min(passes) <= 0:
                out.append(f"submission {sid}: ok but no latency passes recorded")
            elif r["latency_p50_ms"] is not None and not (
                min(passes) <= r["latency_p50_ms"] <= max(passes)
            ):
                out.append(f"submission {sid}: p50 is not the median of its passes")
            if not r["machine"]:
                out.append(f"submission {sid}: no machine description")
        return out + self.digest_problems()


def _row_text(con: sqlite3.Connection, sid: int) -> str:
    """The evaluation record of submission `sid` as stored (every column of its submission and
    evaluation rows but the digest), in one canonical text."""
    sub = con.execute("SELECT * FROM submissions WHERE id = ?", (sid,)).fetchone()
    ev = con.execute("SELECT * FROM evaluations WHERE submission_id = ?", (sid,)).fetchone()
    record = {"submission": _plain(sub), "evaluation": _plain(ev, skip=("digest",))}
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def _award_text(con: sqlite3.Connection, award_id: int) -> str:
    row = con.execute("SELECT * FROM awards WHERE id = ?", (award_id,)).fetchone()
    return json.dumps(_plain(row, skip=("digest",)), sort_keys=True, separators=(",", ":"))


def _plain(row, skip=()) -> dict | None:
    if row is None:
        return None
    return {k: (repr(row[k]) if isinstance(row[k], float) else row[k])
            for k in row.keys() if k not in skip}


def _load_or_create_key(path: Path) -> bytes:
    """The arena's secret key (32 random bytes, hex, mode 0600): next to the database, which
    no runner can see (docs/grading.md). Created atomically on first use."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, path)  # fails if another process created it first: use theirs
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        text = path.read_text(encoding="ascii").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise StoreError(f"{path} is not an arena key (64 hex digits); restore it from a backup")
    return key


def entry_from_row(r: dict, innovation_points: float = 0.0) -> Entry:
    return Entry(
        team=r["team"],
        submission_id=int(r["submission_id"]),
        status=r["status"],
        error=r["error"],
        acc_public=r["acc_public"],
        acc_private=r["acc_private"],
        speed_acc_public=r["speed_acc_public"],
        speed_acc_private=r["speed_acc_private"],
        train_seconds=r["train_seconds"],
        latency_p50_ms=r["latency_p50_ms"],
        latency_p90_ms=r["latency_p90_ms"],
        model_bytes=r["model_bytes"],
        peak_rss_kb=r["peak_rss_kb"],
        innovation_points=innovation_points,
        category=r["category"],
        tags=tuple(r["tags"]),
    )
