"""Stage 3, evaluate: every complete checkpoint on every benchmark, through lm-eval (`lm_eval_runner`) and
evalplus (`evalplus_runner`, `livecodebench`, generated code run in `sandbox`); results go to the store
(`store`), one file per (checkpoint, benchmark). `stage.evaluate_experiment` is the entry point."""
