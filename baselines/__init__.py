"""Built-in regularization methods, one plugin per module; importing a module registers its plugin.

pyproject.toml declares each module in the `entrodrop_bench.regularizers` entry-point group, named as its plugin,
the same way a third-party package declares its own plugins; the registry looks a plugin's module up by name and
imports only that one (`entrodrop_bench.regularizer.BUILTIN_REGULARIZERS` lists them for a source tree).

    plain           no regularization                      plain.py
    weight_decay    decoupled AdamW decay on matrices      weight_decay.py
    hidden_dropout  dropout on attention / MLP outputs     hidden_dropout.py
    neftune         uniform noise on input embeddings      neftune.py
    token_dropout   random input-token dropout (vanilla)   token_dropout.py
    entrodrop       entropy-guided token dropout (paper)   entrodrop.py
    label_smoothing smoothed next-token targets (loss)     label_smoothing.py
    (shared: masking.py = gamma curriculum + masking; common.py = training-only guard, device RNGs)

Adding a method takes one file. Create `baselines/my_method.py`:

    from pydantic import Field
    from entrodrop_bench.regularizer import Regularizer, RegularizerConfig, register_regularizer

    class MyMethodConfig(RegularizerConfig):            # unknown YAML keys are errors
        strength: float = Field(0.1, ge=0, le=1, description="What it does, and the paper's value.")

    @register_regularizer("my_method")                  # the name used in YAML `plugin:`
    class MyMethod(Regularizer):
        Config = MyMethodConfig

        def transform_embeddings(self, embeds, meta):   # training micro-batches only
            # meta.eligible: target tokens that are not first-of-document, special or pad.
            # Draw randomness only from meta.generator, so masks survive resumes.
            return embeds

Override only the hooks you need: `prepare(ctx)` (build artifacts once, e.g. from ctx.model or
ctx.target_docs into ctx.cache_dir), `adjust_model(model)` (hooks), `param_groups(model)` (optimizer
groups, weight decay), `before_forward(meta)` (every micro-batch, before its forward), `transform_embeddings(embeds,
meta)`, `log_values()` (scalars to log), `token_gates(...)` (Figure 2c), and the declarations read at config load:
`baseline_dependency`, `signals`, `table_role`, `progress_keys` (see entrodrop_bench/regularizer.py). Keep hooks
vectorized and device/dtype-agnostic. Then add it to `BUILTIN_REGULARIZERS` (entrodrop_bench/regularizer.py) and to
the entry points in pyproject.toml, and use it in a config:
`methods: {mine: {plugin: my_method, params: {strength: 0.2}}}`. A plugin living in another package
registers through its own `entrodrop_bench.regularizers` entry point instead (see
tests/fixtures_thirdparty/).
"""

BUILTIN = ("plain", "weight_decay", "hidden_dropout", "neftune", "token_dropout", "entrodrop", "label_smoothing")
"""Names registered by this package (each by the module of the same name)."""
