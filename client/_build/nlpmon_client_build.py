"""Build backend of nlpmon-client: setuptools, after copying the client's modules from the repository's monitor/.

The client ships the same files as nlpmon (``monitor.client`` and the event decoder it validates with), never a
copy kept by hand: each build hook first copies them from ``../monitor`` into ``src/`` (generated, git-ignored).
An unpacked sdist has no ``../monitor`` next to it and already holds ``src/``, so building a wheel from it copies
nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import build_meta as _setuptools

HERE = Path(__file__).resolve().parents[1]  # client/
REPO = HERE.parent
# The modules a serving app needs: the whole monitor.client package plus what it imports. The architecture
# allows monitor.client to import only monitor.ingest.events (and so what events imports: its types and its
# validator); tests/test_client_dist.py checks this list against the import graph, so a new import fails the
# tests before it breaks an install.
CLIENT_PACKAGE = "monitor/client"
MODULES = ("monitor/__init__.py", "monitor/ingest/__init__.py", "monitor/ingest/events.py",
           "monitor/ingest/event_schema.py", "monitor/ingest/validate.py")


def _in_repository() -> bool:
    return (REPO / "pyproject.toml").is_file() and (REPO / CLIENT_PACKAGE / "__init__.py").is_file()


def stage(dest: Path = HERE / "src") -> None:
    """Copy the client's modules from the repository into ``dest`` (replacing what an older build left)."""
    if not _in_repository():
        return
    shutil.rmtree(dest / "monitor", ignore_errors=True)
    for path in sorted((REPO / CLIENT_PACKAGE).glob("*.py")) + [REPO / m for m in MODULES]:
        target = dest / path.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def _staged(hook):
    def run(*args, **kwargs):
        stage()
        return hook(*args, **kwargs)

    run.__name__ = hook.__name__
    return run


# The PEP 517 hooks. No editable hooks: an editable install of copies would not follow edits; develop in the
# repository with nlpmon itself (`pip install -e .`), which contains monitor.client.
get_requires_for_build_wheel = _staged(_setuptools.get_requires_for_build_wheel)
get_requires_for_build_sdist = _staged(_setuptools.get_requires_for_build_sdist)
prepare_metadata_for_build_wheel = _staged(_setuptools.prepare_metadata_for_build_wheel)
build_wheel = _staged(_setuptools.build_wheel)
build_sdist = _staged(_setuptools.build_sdist)
