"""Parsing the Snakefile stays light: the planning code (and the packages it reads) imports no torch, no
model library, no PIL and no scikit-learn, so a paper-scale grid plans in seconds and a login node without a
GPU stack can submit it."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap

from tests.conftest import REPO

HEAVY = ("torch", "diffusers", "transformers", "PIL", "sklearn", "matplotlib", "av", "safetensors")

# Run in a fresh interpreter: an import hook records every heavy import whose importing code lies in this
# repository (Snakemake itself may import PIL through docutils; that is not ours).
PROBE = textwrap.dedent("""
    import builtins, os, sys, traceback
    repo, heavy = sys.argv[1], tuple(sys.argv[2].split(","))
    ours = [os.path.join(repo, d) for d in ("clipstore", "extractors", "probes", "workflow", "Snakefile")]
    original, found = builtins.__import__, set()

    def hook(name, globals=None, locals=None, fromlist=(), level=0):
        top = name.split(".")[0]
        if top in heavy and top not in sys.modules:
            caller = [f.filename for f in traceback.extract_stack()[:-1] if "importlib" not in f.filename][-1]
            if caller.startswith(tuple(ours)) or caller.endswith(".smk"):
                found.add(f"{top} (from {os.path.relpath(caller, repo)})")
        return original(name, globals, locals, fromlist, level)

    builtins.__import__ = hook
    from snakemake.cli import main
    try:
        main(["--snakefile", os.path.join(repo, "Snakefile"), "--directory", sys.argv[3], "-n", "--quiet",
              *sys.argv[4:]])
    except SystemExit as done:
        assert not done.code, f"snakemake -n failed ({done.code})"
    print("HEAVY:" + ";".join(sorted(found)))
""")


def test_parsing_the_snakefile_imports_nothing_heavy(tmp_path):
    """The demo config plans every family (diffusers and transformers ones), every task and fusions."""
    result = subprocess.run([sys.executable, "-c", PROBE, str(REPO), ",".join(HEAVY), str(tmp_path),
                             "--configfile", str(REPO / "config/config.yaml")],
                            capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stdout.splitlines() if line.startswith("HEAVY:")]
    assert result.returncode == 0 and lines, result.stdout[-3000:] + result.stderr[-3000:]
    assert lines[0] == "HEAVY:", f"parsing the Snakefile imported {lines[0][6:]}"


def test_no_extractor_imports_the_tiny_model_builder():
    """Family modules never import the tiny-model builder (it imports them for their tiny configs): checkpoints
    a workflow has yet to build are declared by the workflow (extractors.checkpoints.expect_checkpoint)."""
    for path in (REPO / "extractors").glob("*.py"):
        if path.name == "tiny_models.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any("tiny_models" in n for n in names), f"{path.name} imports the tiny-model builder"
