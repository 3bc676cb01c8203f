"""Vanilla token dropout: EntroDrop's masking and curriculum on ALL eligible target tokens (no entropy gate).

The "Random Masking / All Tokens" row of the paper's Table 3. At equal gamma_max it masks about 1/k times
as many tokens as EntroDrop (which gates a share k of them); compare runs by their logged
`masked_fraction`, or match rates (e.g. EntroDrop gamma_max 0.2 vs vanilla 0.1 at k = 0.5).
"""

from __future__ import annotations

from baselines.masking import TokenDropoutBase, TokenDropoutConfig
from entrodrop_bench.regularizer import TableRole, register_regularizer


@register_regularizer("token_dropout")
class TokenDropout(TokenDropoutBase):
    """Random input-token dropout of target tokens, gamma_j ~ U(0, gamma_max(j)), mean-embedding fill."""

    Config = TokenDropoutConfig
    version = "1"

    @classmethod
    def table_role(cls, config: TokenDropoutConfig) -> TableRole:
        return TableRole(label="+Token Dropout", rank=4, targets="all")
