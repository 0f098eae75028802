"""The verifier registry: built-ins, dotted paths, and a real pip-installed plugin."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sdp.stages.verify import verify_records
from verifiers import ENTRY_POINT_GROUP, UnknownVerifierError, Verdict, available_verifiers, get_verifier
from verifiers.math_verifier import MathVerifier

PLUGIN_SRC = Path(__file__).parent / "plugin_pkg"
PLUGIN_DIST = "sdp-parity-plugin"
REPO = Path(__file__).resolve().parent.parent


def test_builtin_math_gets_its_options():
    verifier = get_verifier("math", timeout=2.5, not_an_option=True)
    assert isinstance(verifier, MathVerifier)
    assert verifier.timeout == 2.5
    assert verifier.verify({"answer": "4"}, "2+2 = \\boxed{4}") == Verdict(True, "equivalent", "4")


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownVerifierError) as info:
        get_verifier("geometry")
    message = str(info.value)
    assert "'geometry'" in message and "math" in message and "code" in message
    assert "package.module:Class" in message


def test_dotted_path():
    verifier = get_verifier("tests.plugins:NeedleVerifier", timeout=3.0)
    assert verifier.verify({"needle": "q"}, "quiet").ok is True
    assert verifier.verify({}, "quiet").ok is None


def test_bad_dotted_path_is_a_clear_error():
    with pytest.raises(UnknownVerifierError, match="cannot import verifier 'tests.nowhere:Nothing'"):
        get_verifier("tests.nowhere:Nothing")


def test_non_verifier_is_rejected():
    with pytest.raises(TypeError, match="verify"):
        get_verifier("pathlib:PurePath")


@pytest.fixture(scope="module")
def parity_plugin(tmp_path_factory: pytest.TempPathFactory):
    """pip-install tests/plugin_pkg into this venv (offline), and remove it afterwards."""
    try:
        importlib.metadata.distribution(PLUGIN_DIST)
        preinstalled = True
    except importlib.metadata.PackageNotFoundError:
        preinstalled = False
    if not preinstalled:
        # Build from a copy so that the build leaves no egg-info/build folders in the repo.
        src = tmp_path_factory.mktemp("plugin") / "plugin_pkg"
        shutil.copytree(PLUGIN_SRC, src)
        # Offline: build with this venv's setuptools. (Python >= 3.12 venvs lack it unless
        # installed; then pip's isolated build needs the package index.)
        offline = importlib.util.find_spec("setuptools") is not None
        flags = ["--no-build-isolation", "--no-index"] if offline else []
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-deps", *flags, "--disable-pip-version-check",
             "-q", str(src)],
            check=True,
        )
        importlib.invalidate_caches()
    yield "parity"
    if not preinstalled:
        subprocess.run(
            [sys.executable, "-m", "pip", "uninstall", "-y", "-q", PLUGIN_DIST], check=True
        )


def test_installed_plugin_is_found_by_name(parity_plugin: str):
    eps = {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert parity_plugin in eps
    assert parity_plugin in available_verifiers()
    verifier = get_verifier(parity_plugin, timeout=1.0)
    assert type(verifier).__module__ == "sdp_parity_plugin.verifier"
    assert verifier.verify({"n": 7}, "7 is not divisible by 2, so it is odd").ok is True
    assert verifier.verify({"n": 8}, "so it is odd").ok is False
    assert verifier.verify({}, "odd").ok is None


def test_installed_plugin_is_used_by_verify_records_and_cli(parity_plugin: str, tmp_path: Path):
    records = [
        {"id": f"p{i}", "domain": parity_plugin, "prompt": f"Is {i} even or odd?", "n": i,
         "completion": f"{i} is {'even' if i % 3 else 'odd'}"}
        for i in range(80)
    ] + [{"id": "m", "domain": "math", "prompt": "1+1?", "answer": "2", "completion": "\\boxed{2}"}]
    # 81 records and 2 workers: the process-pool path, where workers find the plugin themselves.
    results = verify_records(records, workers=2, progress=False)
    expected = [((i % 2 == 0) == bool(i % 3)) for i in range(80)] + [True]
    assert [r["verdict"]["ok"] for r in results] == expected
    assert results[3]["verdict"] == {"ok": True, "reason": "right parity", "answer": "odd"}

    path = tmp_path / "parity.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "sdp.verify", str(path), "-o", str(out), "--workers", "1", "--progress", "false"],
        capture_output=True, text=True, cwd=REPO, check=True,
    )
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["verdict"]["ok"] for r in written] == expected
    assert f"{sum(expected)} ok, {len(expected) - sum(expected)} wrong, 0 unverifiable" in proc.stdout
