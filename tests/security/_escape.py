"""Shared by the security tests."""

# the route every escape below takes: _posixsubprocess.fork_exec raises no audit event, so the
# audit hook never sees the process it starts (a real escape from the in-process guard)
ESCAPE = '''
import _posixsubprocess as _ps, os as _os
def _sh(cmd, *, _ps=_ps, _os=_os):
    r, w = _os.pipe()
    er, ew = _os.pipe()
    pid = _ps.fork_exec([b"/bin/sh", b"-c", cmd.encode()], [b"/bin/sh"], True, (), None, None,
                        -1, -1, -1, w, -1, w, er, ew, False, False, -1, None, None, None, -1,
                        None, False)
    _os.close(w); _os.close(ew); _os.close(er)
    out = b""
    while True:
        chunk = _os.read(r, 65536)
        if not chunk:
            break
        out += chunk
    _os.close(r)
    return out.decode("utf-8", "replace")
'''

# a Python script run below the audit layer (written into the work directory first)
ESCAPE_PY = '''
import sys as _sys
def _py(code, *args):
    name = "esc_%d.py" % abs(hash(code))
    with open(name, "w") as f:
        f.write(code)
    return _sh(" ".join([_sys.executable, name, *args]))
'''
