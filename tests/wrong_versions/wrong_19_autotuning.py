"""Plausible wrong versions of module 19's graded functions (issue #18).

Most are the reference solution cell with one mistake edited in (`_edit` fails loudly if the
reference changed so that the edit no longer applies); a few are written out whole."""

from __future__ import annotations

from tito.modules import load_module
from tito.source import parse_source
from wrong_versions.runner import REPO, WrongVersion

_CELLS = {c.grade_id: c.body for c in parse_source(load_module(REPO / "modules" / "19_autotuning"))
          .cells if c.is_solution}


def _edit(exercise: str, name: str, *pairs: tuple[str, str]) -> WrongVersion:
    src = _CELLS[exercise]
    for old, new in pairs:
        if old not in src:
            raise AssertionError(f"wrong version {exercise}/{name}: {old!r} not in the reference")
        src = src.replace(old, new)
    return WrongVersion(exercise, name, src)


WRONG = [
    # ---- 1. model_bytes
    WrongVersion("model_bytes", "parameters only (no quantization buffers)", '''
def model_bytes(model):
    return int(sum(p.data.nbytes for p in model.parameters()))
'''),
    WrongVersion("model_bytes", "INT4 codes not packed", '''
def model_bytes(model):
    return int(sum(a.nbytes for a in model.state_dict().values()))
'''),
    WrongVersion("model_bytes", "counts elements, not bytes", '''
def model_bytes(model):
    return int(sum(a.size for a in model.state_dict().values()))
'''),
    _edit("model_bytes", "packs INT8 weights too", ("bits <= 4", "bits <= 8")),
    _edit("model_bytes", "root layer's key taken as '.weight'",
          ('f"{name}.weight" if name else "weight"', 'f"{name}.weight"')),
    _edit("model_bytes", "odd code counts rounded down",
          ("pack_int4(mod.weight).nbytes", "mod.weight.size // 2")),
    # ---- 2. interleaved_seconds
    _edit("interleaved_seconds", "same order every round",
          ("range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))", "range(len(fns))")),
    _edit("interleaved_seconds", "reversed on even rounds",
          ("if r % 2 == 0", "if r % 2 == 1")),
    _edit("interleaved_seconds", "sample time not divided by the calls",
          ("(clock() - t0) / numbers[i]", "clock() - t0")),
    _edit("interleaved_seconds", "time.perf_counter instead of the clock argument",
          ("t0 = clock()", "t0 = time.perf_counter()"),
          ("(clock() - t0)", "(time.perf_counter() - t0)")),
    _edit("interleaved_seconds", "one call per sample",
          ("for _ in range(numbers[i]):", "for _ in range(1):"),
          ("(clock() - t0) / numbers[i]", "(clock() - t0)")),
    _edit("interleaved_seconds", "all rounds of one function, then the next",
          ("""        for r in range(rounds):
            order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
            for i in order:""", """        for i in range(len(fns)):
            for r in range(rounds):""")),
    # ---- 3. Constraints
    _edit("constraints", "no latency margin",
          ("limit = self.max_latency_ms * ((1 - self.latency_margin) if margin else 1.0)",
           "limit = self.max_latency_ms")),
    _edit("constraints", "margin applied even without margin=True",
          ("((1 - self.latency_margin) if margin else 1.0)", "(1 - self.latency_margin)")),
    _edit("constraints", "the looser floor wins", ("return max(floors)", "return min(floors)")),
    _edit("constraints", "a value at its limit fails",
          ("metrics.model_bytes > self.max_bytes", "metrics.model_bytes >= self.max_bytes"),
          ("metrics.peak_memory > self.max_peak_memory",
           "metrics.peak_memory >= self.max_peak_memory")),
    _edit("constraints", "no error without the baseline",
          ("""            if baseline_accuracy is None:
                raise ValueError("max_accuracy_drop needs the baseline model's accuracy")
            floors.append""", """            if baseline_accuracy is not None:
                floors.append""")),
    _edit("constraints", "every accuracy violation named min_accuracy",
          ('name = "min_accuracy" if floor == self.min_accuracy else "max_accuracy_drop"',
           'name = "min_accuracy"')),
    # ---- 4. Pipeline
    _edit("pipeline", "a repeated step accepted",
          ('''            if s.name in seen:
                raise ValueError(f"step {s.name!r} appears twice in the pipeline")
''', "")),
    _edit("pipeline", "compares with the first step's stage only",
          ("            last = stage\n",
           "            last = max(last, 0) if last >= 0 else stage\n")),
    _edit("pipeline", "unknown step: KeyError, not ValueError",
          ('''            if s.name not in STEPS:
                raise ValueError(f"unknown step {s.name!r}; known steps: {sorted(STEPS)}")
''', "")),
    _edit("pipeline", "order error without the stage names",
          ("""f"step {s.name!r} ({STAGES[stage]}) cannot run after a "
                                 f"{STAGES[last]} step: the order is {' -> '.join(STAGES)}\"""",
           """f"step {s.name!r} is out of order\"""")),
    _edit("pipeline", "steps sorted silently instead of refused",
          ('                raise ValueError(f"step {s.name!r} ({STAGES',
           "                self.steps.sort(key=lambda t: STEPS[t.name].stage)\n"
           "                break\n"
           '                raise ValueError(f"step {s.name!r} ({STAGES')),
    # ---- 5. pareto_front
    _edit("pareto_front", "identical items dominate each other",
          ("if not any(dominates(vals[j], vals[i]) for j in range(len(items)) if j != i)",
           "if not any(all(x <= y for x, y in zip(vals[j], vals[i])) "
           "for j in range(len(items)) if j != i)")),
    _edit("pareto_front", "front sorted by value, not in input order",
          ("    return [\n        it\n", "    return sorted([\n        it\n"),
           ("for j in range(len(items)) if j != i)\n    ]",
            "for j in range(len(items)) if j != i)\n    ], key=key)")),
    _edit("pareto_front", "returns the keys instead of the items",
          ("    return [\n        it\n", "    return [\n        vals[i]\n")),
    _edit("pareto_front", "maximises instead of minimising",
          ("dominates(vals[j], vals[i])", "dominates(vals[i], vals[j])")),
    _edit("pareto_front", "first value only",
          ("vals = [tuple(key(it)) for it in items]",
           "vals = [tuple(key(it))[:1] for it in items]")),
    # ---- 6. monotone_infeasible
    _edit("monotone_infeasible", "relation reversed (milder configs ruled out)",
          ("d.config.at_most_as_aggressive_as(config)",
           "config.at_most_as_aggressive_as(d.config)")),
    _edit("monotone_infeasible", "noise ignored",
          ("d.metrics.accuracy + noise < floor", "d.metrics.accuracy < floor")),
    _edit("monotone_infeasible", "at the floor within noise counts as failing",
          ("d.metrics.accuracy + noise < floor", "d.metrics.accuracy + noise <= floor")),
    _edit("monotone_infeasible", "every milder relative must fail (all, not any)",
          ("    return any(\n", "    return bool(measured) and all(\n")),
    _edit("monotone_infeasible", "no floor not handled",
          ("    if floor is None:\n        return False\n", "")),
    _edit("monotone_infeasible", "recovery ignored",
          ("d.config.at_most_as_aggressive_as(config)",
           "d.config.prune <= config.prune"
           " and (d.config.quantize or 32) >= (config.quantize or 32)")),
]
