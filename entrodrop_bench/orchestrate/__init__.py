"""Orchestration: what runs the stages, never what they compute. `pipeline` runs the stages in order in this
process, `launch` submits them as jobs (SLURM or local processes) and reports their status, `plan` estimates an
experiment's cost before anything runs, `sources` checks that every input can be reached, and `catalog` lists a
config's benchmarks. Only the CLI (`entrodrop_bench.cli`) imports this package; no stage, core module or the report
does (tests/test_import_rules.py)."""
