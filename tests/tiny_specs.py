"""Small analysis specs that more than one test module runs or reads (a test module in one folder cannot
import another folder's by name)."""

import json

__all__ = ["CIRCUITS_SPEC", "QUIRKY_SPEC", "TRUTH_METHODS", "TRUTH_SETS", "TRUTH_SPEC"]

TRUTH_SETS = ["cities", "neg_cities", "larger_than", "element_symb", "neg_element_symb"]
TRUTH_METHODS = ["logistic", "mean_diff", "ccs", "ttpd"]
TRUTH_SPEC = f"""
name = "truth-tiny"
analysis = "truth_generalization"
[model]
spec = "zoo:minilm"
[data]
sets = {json.dumps(TRUTH_SETS)}
max_rows = 40
[probe]
methods = {json.dumps(TRUTH_METHODS)}
[eval]
n_boot = 50
"""
# the tiny circuits scenario: tests/analyses/test_circuits_analysis.py, and the report with scripts for
# tests/report/test_report_browser.py
CIRCUITS_SPEC = """
name = "circuits-tiny"
analysis = "circuits"
[train]
rows = 200
steps = 1
batch_size = 16
[drift]
probe_rows = 800
[circuits]
pairs = 8
ig_steps = 2
"""

QUIRKY_SPEC = """
name = "quirky-small"
analysis = "quirky_elk"
[model]
spec = "zoo:quirky-arith"
[data]
train_rows = 1500
test_rows = 400
[capture]
batch_size = 256
[causal]
test_rows = 300
n_random = 2
"""
