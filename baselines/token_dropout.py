"""Vanilla token dropout: EntroDrop's masking and curriculum on ALL eligible target tokens (no entropy gate).

The "Random Masking / All Tokens" row of the paper's Table 3. At equal gamma_max it masks about 1/k times
as many tokens as EntroDrop (which gates a share k of them). `gamma_max: {match: entrodrop}` sets gamma_max,
before training, so that its expected masked fraction equals that method's (gamma_max_entrodrop * k for the same
curriculum; the formula is in `baselines.masking`): Table 3's rate-matched random-masking row.
"""

from __future__ import annotations

from baselines.masking import TokenDropoutBase, TokenDropoutConfig
from entrodrop_bench.regularizer import RateMatch, TableRole, register_regularizer


@register_regularizer("token_dropout")
class TokenDropout(TokenDropoutBase):
    """Random input-token dropout of target tokens, gamma_j ~ U(0, gamma_max(j)), mean-embedding fill."""

    Config = TokenDropoutConfig
    version = "1"

    @classmethod
    def table_role(cls, config: TokenDropoutConfig) -> TableRole:
        matched = isinstance(config.gamma_max, RateMatch)
        return TableRole(label="+Token Dropout (rate-matched)" if matched else "+Token Dropout", rank=4, targets="all")
