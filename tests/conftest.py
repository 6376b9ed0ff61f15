"""Shared test set-up: tests run on the CPU with one thread so parallel runs stay predictable; helper
modules of input makers are importable by name."""

import importlib.util
import sys
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


class _HelperModules:
    """Finds tests/<name>.py for the helper modules below (input makers, not tests) when a test imports
    them, in any pytest import mode, and only then (building report inputs imports matplotlib)."""

    names = ("report_inputs",)

    def find_spec(self, name, path=None, target=None):
        if name in self.names:
            return importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        return None


sys.meta_path.append(_HelperModules())
