"""Small helpers shared by several test files (pytest puts tests/ on sys.path: `from helpers import ...`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import torch

REPO = Path(__file__).resolve().parent.parent


def load_module_from_file(relative_path: str, name: str) -> ModuleType:
    """Import a file that is not part of an installed package (benchmarks/, tasks/), as lm-eval and the bench do."""
    spec = importlib.util.spec_from_file_location(name, REPO / relative_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ForwardWrapper(torch.nn.Module):
    """Stands in for DDP/FSDP/accelerate/compile wrappers: a module whose forward calls the real model's forward."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.module = model

    def forward(self, **kwargs):
        return self.module(**kwargs)
