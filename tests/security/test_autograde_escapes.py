"""Routes out of the grading process, each tried by a submission of the fixture module 98_vec.

Every attack below escapes the in-process guard for real (``_posixsubprocess.fork_exec`` raises
no audit event; the started process has no hook at all; ``test_the_escape_is_real_without_the
_boundary`` shows it reading the gradebook without the boundary). Behind the OS boundary each
must end with nothing read of the course or of another student, every other student's grades
intact, the batch complete, and the reason stated.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from _escape import ESCAPE, ESCAPE_PY

from tito import nbg
from tito.export import export
from tito.grade import autograde, check_gradebook
from tito.modules import load_module
from tito.project import Project
from tito.release import release_module
from tito.source import parse_source
from tito.workers import BatchGrader, Limits, inline, local_pool

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
VEC = REPO / "tests" / "fixtures" / "modules" / "98_vec"
CONFIG = REPO / "nbgrader_config.py"
LIMITS = Limits(cell_timeout=15.0, notebook_timeout=40.0, memory_mb=400, work_mb=32)
SCALE = "def scale(x, k):\n    return np.asarray(x, dtype=float) * k"
DOT = "def dot(a, b):\n    return float(np.sum(np.asarray(a, dtype=float) * np.asarray(b)))"
NORM = "def norm(x):\n    return float(np.sqrt(np.sum(np.asarray(x, dtype=float) ** 2)))"
HONEST = {"scale_impl": SCALE, "dot_impl": DOT, "norm_impl": NORM}
MARKER = "tito-flood-marker-7f3a"
# text that exists only in course files: the gradebook header, the instructor's solution
# markers, the hidden checks' messages
COURSE_ONLY = ("SQLite format 3", "BEGIN SOLUTION", "hidden: negative factor", "BEGIN HIDDEN")


def released(project: Project) -> dict:
    return json.loads((project.course_dir / "release" / "98_vec" / "vec.ipynb").read_text())


def submit(project: Project, student: str, fill: dict) -> Path:
    nb = released(project)
    for cell in nb["cells"]:
        gid = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if gid in fill:
            cell["source"] = fill[gid]
    dest = project.course_dir / "submitted" / student / "98_vec"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "vec.ipynb").write_text(json.dumps(nb, indent=1))
    return dest


def outputs_of(project: Project, student: str, grade_id: str = "scale_impl") -> str:
    nb = json.loads(
        (project.course_dir / "autograded" / student / "98_vec" / "vec.ipynb").read_text()
    )
    cell = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id")
                == grade_id)
    parts = []
    for o in cell.get("outputs", []):
        parts.append("".join(o.get("text", "")))
        parts.append(str((o.get("data") or {}).get("text/plain", "")))
        parts.append("\n".join(o.get("traceback", [])))
    return "\n".join(parts)


def stored_grades(project: Project) -> dict:
    out = {}
    with nbg.quiet_nbgrader(), nbg.gradebook(project) as gb:
        for sub in gb.assignment_submissions("98_vec"):
            nb = gb.find_submission_notebook("vec", "98_vec", sub.student.id)
            out[sub.student.id] = sorted((g.name, g.auto_score) for g in nb.grades)
    return out


def tree(path: Path) -> dict:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def host_processes_with(marker: str) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker.encode() in (d / "cmdline").read_bytes():
                    found.append(int(d.name))
            except OSError:
                pass
    return found


def attacks(project: Project, port: int, canary: int) -> dict[str, str]:
    course, root, pkg = project.course_dir, project.root, project.package_dir
    esc = SCALE + "\n" + ESCAPE + ESCAPE_PY
    return {
        # shell below the audit layer: the course, .git, module sources, the reference,
        # another student's folder; C-level opens (ctypes, sqlite3) from a hook-less process
        "escape-read": esc
        + f"""
print(_sh("echo ESCAPED-RAN; head -c 16 {course}/gradebook.db; "
          "cat {course}/source/98_vec/vec.ipynb; ls {course}/submitted; ls -a {root}/.git; "
          "cat {root}/modules/98_vec/vec_dev.py; cat {pkg}/vec.py; ls -a {root}; "
          "echo pwned > {course}/submitted/victim/98_vec/pwned.txt 2>&1; "
          "echo CHECKOUT; ls -a {REPO}; echo END"))
print(_py("import ctypes\\nprint('CFD', ctypes.CDLL(None).open(b'{course}/gradebook.db', 0))"))
print(_py("import sqlite3\\ntry:\\n c = sqlite3.connect('file:{course}/gradebook.db?mode=rw',"
          " uri=True)\\n c.execute('update grade set auto_score = 0'); c.commit(); print('ZEROED')"
          "\\nexcept Exception as e:\\n print('SQL', e)"))
""",
        # the same from inside the process: sqlite3 opens the database at C level
        "sqlite-inproc": SCALE
        + f"""
import sqlite3
try:
    _c = sqlite3.connect("file:{course}/gradebook.db?mode=rw", uri=True)
    _c.execute("update grade set auto_score = 0"); _c.commit(); print("ZEROED")
except Exception as e:
    print("SQL", type(e).__name__, e)
""",
        # signals: the worker, the host (a canary process), pidfd of the namespace's init
        "signals": esc
        + f"""
print(_sh("echo ESCAPED-RAN; kill -9 {canary} 2>&1; kill -9 {os.getpid()} 2>&1; ls /proc"))
print(_py("import os, signal\\nfd = os.pidfd_open(1)\\nsignal.pidfd_send_signal(fd, 9)\\n"
          "print('PIDFD-SENT')"))
""",
        # everything it can reach dies, itself included: its notebook fails, nobody else's
        "killer": esc + '\n_sh("kill -9 -1")\n',
        "disk-flood": esc
        + """
n = 0
try:
    with open("big.bin", "wb") as f:
        for n in range(1, 4000):
            f.write(bytes(1 << 20))
            f.flush()
except OSError as e:
    print("STOPPED", n, e.strerror)
print(_sh("dd if=/dev/zero of=/tmp/big bs=1M count=4000 2>&1 | tail -n 1"))
""",
        "proc-flood": esc
        + f"""
print(_py("import os, time\\nn = 0\\ntry:\\n    while n < 1000:\\n"
          "        if os.fork() == 0:\\n            os.close(1); os.close(2); time.sleep(120)"
          "; os._exit(0)\\n        n += 1\\nexcept OSError as e:\\n"
          "    print('FORKS', n, e.strerror)\\nelse:\\n    print('FORKS', n)", "{MARKER}"))
""",
        "network": esc
        + f"""
print(_py("import socket\\ntry:\\n    socket.create_connection(('127.0.0.1', {port}), "
          "timeout=3)\\n    print('CONNECTED')\\nexcept OSError as e:\\n    print('NET', e)"))
""",
        # prints a hidden check it could only have read at run time (simulated: built by
        # concatenation, so no line of its own source equals it)
        "smuggler": SCALE
        + '\nprint("assert np.allclose(scale(np.arange(4), -1), " + '
        + "'-np.arange(4)), \"hidden: negative factor\"')",
        # an honest student whose own line happens to contain a hidden line
        "coincidence": DOT.replace("dot(a, b):", "dot(a, b):\n    # assert close(dot(np.ones(5), "
                                   "np.arange(5)), 10.0), \"hidden: longer vectors\""),
        # a data file that is a symlink to the gradebook, a folder that links to another student
        "symlink-inside": SCALE + "\nimport os\nprint('LISTING', sorted(os.listdir('.')))",
    }


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sec")
    root = tmp / "proj"
    (root / "modules").mkdir(parents=True)
    shutil.copytree(VEC, root / "modules" / "98_vec")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n# BEGIN SOLUTION in a pack\n")
    project = Project.at(root, nbgrader_config=CONFIG)
    spec = load_module(project.modules_dir / "98_vec")
    export([spec], project)
    release_module(parse_source(spec), project)
    for s in ("honest-a", "honest-b", "victim"):
        submit(project, s, HONEST)
    first = {r.student: r for r in autograde(spec, project, jobs=1, limits=LIMITS)}
    before = stored_grades(project)
    victim_files = tree(project.course_dir / "submitted" / "victim")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.setblocking(False)
    canary = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    progs = attacks(project, listener.getsockname()[1], canary.pid)
    for student, prog in progs.items():
        cell = "dot_impl" if student == "coincidence" else "scale_impl"
        submit(project, student, {**HONEST, cell: prog})
    inside = project.course_dir / "submitted" / "symlink-inside" / "98_vec"
    (inside / "data.txt").symlink_to(project.course_dir / "gradebook.db")
    (inside / "other").symlink_to(project.course_dir / "submitted" / "victim")
    # a student folder that is a symlink to another student; a notebook linking to the source
    (project.course_dir / "submitted" / "linker").symlink_to(
        project.course_dir / "submitted" / "victim"
    )
    dest = project.course_dir / "submitted" / "linknb" / "98_vec"
    dest.mkdir(parents=True)
    (dest / "vec.ipynb").symlink_to(project.course_dir / "source" / "98_vec" / "vec.ipynb")
    try:
        results = {r.student: r for r in autograde(spec, project, jobs=2, limits=LIMITS)}
        try:
            conn = listener.accept()[0]
            conn.close()
            connected = True
        except BlockingIOError:
            connected = False
        canary_alive = canary.poll() is None
    finally:
        canary.kill()
        canary.wait()
        listener.close()
    return SimpleNamespace(
        project=project,
        spec=spec,
        first=first,
        before=before,
        results=results,
        victim_files=victim_files,
        connected=connected,
        canary_alive=canary_alive,
    )


def test_the_batch_completes_and_honest_grades_stay(course):
    r = course.results
    for s in ("honest-a", "honest-b", "victim"):
        assert r[s].graded and (r[s].score, r[s].max_score) == (5, 5), r[s].reason
    after = stored_grades(course.project)
    for s in ("honest-a", "honest-b", "victim"):
        assert after[s] == course.before[s]
    assert check_gradebook(course.spec, course.project, list(r.values())) == []
    assert tree(course.project.course_dir / "submitted" / "victim") == course.victim_files


def test_nothing_of_the_course_is_read_from_an_escaped_process(course):
    out = outputs_of(course.project, "escape-read")
    assert "ESCAPED-RAN" in out  # the route was really taken
    for secret in COURSE_ONLY:
        assert secret not in out, out
    assert "No such file or directory" in out
    assert "CFD -1" in out  # the C-level open found nothing
    # of the tito checkout itself (on sys.path here): only the packages and the interpreter
    checkout = out.split("CHECKOUT", 1)[1].split("END", 1)[0].split()
    assert set(checkout) <= {".", "..", "tinytorch", "tito", ".venv"}, checkout
    assert "ZEROED" not in out and "SQL unable to open database file" in out
    victim = course.project.course_dir / "submitted" / "victim" / "98_vec"
    assert not (victim / "pwned.txt").exists()
    # it still earned what its own code earned
    assert course.results["escape-read"].graded


def test_sqlite_in_process_cannot_open_the_gradebook(course):
    out = outputs_of(course.project, "sqlite-inproc")
    assert "ZEROED" not in out and "SQL OperationalError unable to open database file" in out


def test_signals_reach_nothing_outside(course):
    out = outputs_of(course.project, "signals")
    assert "ESCAPED-RAN" in out
    assert out.count("No such process") >= 2  # the canary and the worker are not visible
    assert course.canary_alive
    # PID 1 of the namespace is the sandbox's template: SIGKILL from inside is dropped
    assert course.results["signals"].graded, course.results["signals"].reason


def test_a_notebook_that_kills_everything_it_sees_only_fails_itself(course):
    r = course.results["killer"]
    assert not r.graded and "the grading process died (killed by SIGKILL" in r.reason


def test_disk_flood_stops_at_the_sandbox_size(course):
    out = outputs_of(course.project, "disk-flood")
    n = int(out.split("STOPPED", 1)[1].split()[0])
    assert n <= LIMITS.work_mb + 1 and "No space left on device" in out, out


def test_process_flood_is_capped_and_reaped(course):
    out = outputs_of(course.project, "proc-flood")
    forks = int(out.split("FORKS", 1)[1].split()[0])
    assert forks < 100 and "Resource temporarily unavailable" in out, out
    assert host_processes_with(MARKER) == []  # nothing it started outlived its notebook


def test_no_network(course):
    out = outputs_of(course.project, "network")
    assert "NET" in out and "CONNECTED" not in out
    assert not course.connected


def test_symlinks_are_refused_with_a_reason(course):
    for s in ("linker", "linknb"):
        r = course.results[s]
        assert not r.graded and "is a symbolic link (refused" in r.reason, r.reason
    out = outputs_of(course.project, "symlink-inside")
    assert "LISTING" in out and "data.txt" not in out and "'other'" not in out


def test_the_escape_is_real_without_the_boundary(course, tmp_path):
    """The same escape, graded with --no-sandbox (trusted code only) in a copy of the course,
    reads the gradebook: the boundary is what stops it."""
    root = tmp_path / "copy"
    shutil.copytree(course.project.root, root, symlinks=True)
    project = Project.at(root, nbgrader_config=CONFIG)
    prog = SCALE + "\n" + ESCAPE + f'\nprint(_sh("head -c 15 {project.course_dir}/gradebook.db"))'
    submit(project, "escape-read", {**HONEST, "scale_impl": prog})
    autograde(
        course.spec, project, ["escape-read"], executor=inline, limits=LIMITS, no_sandbox=True
    )
    assert "SQLite format 3" in outputs_of(project, "escape-read")


class DiesOnce(BatchGrader):
    """A worker that dies (as if killed) the first time it meets ``victim``."""

    def __init__(self, ctx, flag: str):
        super().__init__(ctx)
        self.flag = flag

    def __call__(self, students):
        if "victim" in students and not os.path.exists(self.flag):
            Path(self.flag).write_text("died")
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(students)


def test_a_dead_worker_is_replaced_and_the_rest_graded(course, tmp_path):
    flag = str(tmp_path / "died")
    students = ["honest-a", "honest-b", "victim"]
    pool = local_pool(2)

    def executor(fn, batches):
        return pool(DiesOnce(fn.ctx, flag), batches)

    results = autograde(course.spec, course.project, students, executor=executor, limits=LIMITS)
    assert os.path.exists(flag)  # the worker did die
    assert all(r.graded and r.score == 5 for r in results), [r.reason for r in results]


def test_a_failed_run_never_removes_stored_grades(course):
    before = stored_grades(course.project)["victim"]

    def broken(fn, batches):
        for batch in batches:
            yield fn.failed(batch, "grading worker failed: BrokenProcessPool: killed")

    (r,) = autograde(course.spec, course.project, ["victim"], executor=broken, limits=LIMITS)
    assert not r.graded and "grades stored before this run were kept" in " ".join(r.notes)
    assert stored_grades(course.project)["victim"] == before


def test_feedback_withholds_only_the_smugglers_page(course):
    """One student's page shows a hidden check only a hidden cell holds: that page is withheld
    and named; every other page is written, including the honest student whose own line
    contains a hidden line."""
    from tito.errors import CheckFailed
    from tito.feedback import feedback, feedback_paths

    with pytest.raises(CheckFailed) as info:
        feedback(course.spec, course.project)
    text = str(info.value)
    assert "feedback/smuggler/98_vec/vec.html shows hidden check" in text
    students = {p.parents[1].name for p in feedback_paths(course.spec, course.project)}
    assert "smuggler" not in students
    assert {"honest-a", "honest-b", "victim", "coincidence", "escape-read"} <= students
    assert course.results["coincidence"].score == 5
