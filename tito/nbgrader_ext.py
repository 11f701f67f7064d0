"""nbgrader preprocessors tito adds to the course (referenced from nbgrader_config.py)."""

from __future__ import annotations

import re

from nbgrader import utils
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CONTEXT_RE = re.compile(r"^\s*(?:-*>)?\s*\d+ ?(.*)$")  # IPython traceback context line
SUBSTRING_MIN = 12


class ScrubHiddenTestOutputs(NbGraderPreprocessor):
    """Remove output lines that quote a hidden check of their grade cell.

    A failing hidden check leaves an IPython traceback whose context lines show the hidden
    source; ClearHiddenTests only clears the cell's source. Run this before it.
    """

    begin_test_delimeter = Unicode("BEGIN HIDDEN TESTS").tag(config=True)
    end_test_delimeter = Unicode("END HIDDEN TESTS").tag(config=True)
    replacement = Unicode("(line of a hidden check removed)").tag(config=True)

    def hidden_lines(self, source: str) -> set[str]:
        out, inside = set(), False
        for line in source.split("\n"):
            if self.begin_test_delimeter in line:
                inside = True
            elif self.end_test_delimeter in line:
                inside = False
            elif inside and line.strip():
                out.add(line.strip())
        return out

    def quotes_hidden(self, line: str, hidden: set[str]) -> bool:
        """Whether an output line shows a hidden line: as an IPython context line
        (``----> 5 code`` / ``      5 code``), as the whole line, or (for lines long enough
        not to match by accident) anywhere inside it."""
        plain = ANSI_RE.sub("", line)
        if self.begin_test_delimeter in plain or self.end_test_delimeter in plain:
            return True
        m = CONTEXT_RE.match(plain)
        if plain.strip() in hidden or (m and m.group(1).strip() in hidden):
            return True
        return any(len(h) >= SUBSTRING_MIN and h in plain for h in hidden)

    def scrub(self, text: str, hidden: set[str]) -> str:
        kept: list[str] = []
        for line in text.split("\n"):
            if not self.quotes_hidden(line, hidden):
                kept.append(line)
            elif not kept or kept[-1] != self.replacement:
                kept.append(self.replacement)
        return "\n".join(kept)

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type != "code" or not utils.is_grade(cell):
            return cell, resources
        hidden = self.hidden_lines(cell.source)
        if not hidden:
            return cell, resources
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                out.traceback = [self.scrub(entry, hidden) for entry in out.traceback]
                out.evalue = self.scrub(out.evalue, hidden)
            elif out.output_type == "stream":
                out.text = self.scrub(out.text, hidden)
            elif out.output_type in ("execute_result", "display_data"):
                for mime, value in list(out.get("data", {}).items()):
                    if mime.startswith("text/") and isinstance(value, str):
                        out.data[mime] = self.scrub(value, hidden)
        return cell, resources
