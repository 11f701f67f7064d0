"""Plausible wrong versions of every graded function of modules 15-20 (issue #18).

``wrong_NN_name.py`` lists them for module NN; ``runner.py`` runs each through the module's
checks; ``tests/test_wrong_versions.py`` asserts that each fails a hidden check (the judge) and
that most fail a visible one, so students learn of a mistake before submitting.
"""
