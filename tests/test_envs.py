"""The conda environments in envs/ give every job what it imports (`snakemake --sdm conda`).

Static and fast: no conda is needed. For each env file, the rules that use it are read from
workflow/rules/*.smk (their `conda:` and `script:` lines), and the job scripts' `import` statements are
walked with ast, following imports into the repository's own modules transitively -- imports inside
functions included (extractors import torch, diffusers and transformers lazily), as are the
``"module:Class"`` strings the registries import on demand and ``importlib.import_module("name")`` calls.
Every third-party top-level module found is mapped to its distribution with
``importlib.metadata.packages_distributions()`` (this test's environment has them all installed) and must be
provided by the env: a package the env lists, or a requirement of the project (setup.cfg: the base
`install_requires` plus the extras the env installs).

The env files install the project itself (``-e ../..``, or ``-e ../..[extra]`` for an env that needs an
extra). Snakemake copies an env file to ``<workdir>/.snakemake/conda/<hash>.yaml`` and conda runs pip in the
folder of that copy, so relative paths in the `pip:` section resolve from there (see the env files'
comment); this test resolves them the same way. Snakemake names an env after the file's text only, so each
env file carries a digest of the requirements it installs (setup.cfg, envs/constraints.txt): editing them
changes the text, and Snakemake builds a new env.
"""

from __future__ import annotations

import ast
import configparser
import hashlib
import importlib.metadata
import re
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ENVS = REPO / "envs"
RULE_FILES = sorted((REPO / "workflow" / "rules").glob("*.smk")) + [REPO / "Snakefile"]
# Where Snakemake puts its copy of an env file, and so where conda runs pip (cwd) when it creates the env.
ENV_COPY_DIR = REPO / ".snakemake" / "conda"
# Where jobs find the repository's own modules: the script's folder (Snakemake adds it to sys.path), the
# checkout (PYTHONPATH, set by workflow/rules/common.smk) and workflow/ (room for workflow packages).
ROOTS = (REPO, REPO / "workflow")
DIGEST_RE = re.compile(r"^# requirements digest: ([0-9a-f]+)\s*$", re.MULTILINE)
NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
LAZY_REF_RE = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):[A-Za-z_]\w*$")  # "extractors.wan:WanT2VExtractor"
OPTIONAL = {"ImportError", "ModuleNotFoundError"}


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str:
    match = NAME_RE.match(line)
    assert match, f"cannot read a distribution name from requirement {line!r}"
    return canonical(match.group(1))


# --- the workflow's rules ---------------------------------------------------------------------------------


@dataclass
class Rule:
    where: str  # file:line of the rule header
    name: str
    conda: Path | None = None
    script: Path | None = None


def _directive_value(lines: list[str], index: int, rest: str, where: str) -> str:
    """A `conda:` / `script:` value: a string literal on the same line or the next non-blank one."""
    text = rest.strip()
    while not text:
        index += 1
        text = lines[index].strip()
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = None
    assert isinstance(value, str), (f"{where}: expected a string literal path, got {text!r}; "
                                    "tests/test_envs.py reads rules statically")
    return value


@cache
def workflow_rules() -> tuple[Rule, ...]:
    """Every rule of the workflow with its `conda:` and `script:` paths (relative to its .smk file)."""
    rules: list[Rule] = []
    for path in RULE_FILES:
        lines = path.read_text().splitlines()
        current, indent, in_string = None, 0, False
        for index, line in enumerate(lines):
            where = f"{path.relative_to(REPO)}:{index + 1}"
            quotes = line.count('"""') + line.count("'''")
            if in_string or quotes % 2:  # inside a docstring, whatever its indentation
                in_string ^= bool(quotes % 2)
                continue
            header = re.match(r"^(\s*)(?:rule|checkpoint)\b\s*(\w*)\s*:", line)
            if header:
                current, indent = Rule(where, header.group(2) or f"<rule at {where}>"), len(header.group(1))
                rules.append(current)
                continue
            if current is None or not line.strip() or line.lstrip().startswith("#"):
                continue
            if len(line) - len(line.lstrip()) <= indent:
                current = None  # left the rule's body
                continue
            directive = re.match(r"^\s*(conda|script)\s*:(.*)$", line)
            if directive:
                value = _directive_value(lines, index, directive.group(2), where)
                setattr(current, directive.group(1), (path.parent / value).resolve())
    return tuple(rules)


def env_rules() -> dict[Path, list[Rule]]:
    by_env: dict[Path, list[Rule]] = {}
    for rule in workflow_rules():
        if rule.conda is not None:
            by_env.setdefault(rule.conda, []).append(rule)
    return by_env


ENV_FILES = sorted(ENVS.glob("*.yaml"))


# --- the project's requirements ---------------------------------------------------------------------------


@cache
def setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    return parser


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip() and not line.strip().startswith("#")]


def project_requirements(extras: tuple[str, ...]) -> list[str]:
    """The requirement lines installing the project with ``extras`` brings: base plus those extras."""
    cfg = setup_cfg()
    lines = _lines(cfg["options"]["install_requires"])
    declared = cfg["options.extras_require"] if cfg.has_section("options.extras_require") else {}
    for extra in extras:
        assert extra in declared, f"extra [{extra}] is not declared in setup.cfg [options.extras_require]"
        lines += _lines(declared[extra])
    return lines


# --- the env files -------------------------------------------------------------------------------------------


@dataclass
class EnvSpec:
    path: Path
    conda: list[str] = field(default_factory=list)  # conda packages ("python=3.11", "pip")
    pip: list[str] = field(default_factory=list)  # PEP 508 requirement lines of the pip section
    project_extras: tuple[str, ...] | None = None  # None: the env does not install the project
    project_paths: list[Path] = field(default_factory=list)  # the project paths, resolved as pip resolves them
    constraints: list[Path] = field(default_factory=list)

    def requirement_lines(self) -> list[str]:
        lines = list(self.pip)
        if self.project_extras is not None:
            lines += project_requirements(self.project_extras)
        return lines

    def provided(self) -> set[str]:
        """Canonical names of the distributions the env gets by name (not their dependencies)."""
        names = {requirement_name(spec) for spec in self.conda}
        return names | {requirement_name(line) for line in self.requirement_lines()}

    def digest(self) -> str:
        """Changes whenever what installing the project (and its constraints) means for this env changes:
        what the env file's own lines install is in its text already."""
        project = project_requirements(self.project_extras) if self.project_extras is not None else []
        lines = sorted(re.sub(r"\s+", "", line) for line in project)
        for constraint in self.constraints:
            lines.append("-c " + ";".join(sorted(_lines(constraint.read_text()))))
        lines.append(f"extras={sorted(self.project_extras or ())}")
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def _local_target(text: str) -> tuple[Path, tuple[str, ...]] | None:
    """A local path pip would install (``../..[extract]``), resolved from the env copy's folder."""
    text = text.strip()
    if text.startswith("file:"):
        text = re.sub(r"^file:(//)?", "", text)
    elif not text.startswith((".", "/")):
        return None
    match = re.match(r"^(.*?)(?:\[([^\]]*)\])?$", text)
    extras = tuple(e.strip() for e in (match.group(2) or "").split(",") if e.strip())
    return (ENV_COPY_DIR / match.group(1)).resolve(), extras


@cache
def env_spec(path: Path) -> EnvSpec:
    data = yaml.safe_load(path.read_text())
    spec = EnvSpec(path)
    for entry in data.get("dependencies", []):
        if isinstance(entry, str):
            spec.conda.append(entry)
            continue
        assert isinstance(entry, dict) and set(entry) == {"pip"}, f"{path.name}: unexpected entry {entry!r}"
        for line in entry["pip"]:
            line = line.split(" #")[0].strip()
            option = re.match(r"^(-e|--editable|-c|--constraint)[\s=]+(.+)$", line)
            if option and option.group(1) in ("-c", "--constraint"):
                spec.constraints.append((ENV_COPY_DIR / option.group(2).strip()).resolve())
                continue
            local = _local_target(option.group(2) if option else line)
            if local is not None:
                target, extras = local
                spec.project_paths.append(target)
                spec.project_extras = tuple(sorted(set(spec.project_extras or ()) | set(extras)))
            elif re.match(r"^(--index-url|--extra-index-url|-i|--find-links|-f)[\s=]", line):
                continue  # where pip looks (e.g. a CUDA index for torch), not what the env gets
            elif option or line.startswith("-"):
                pytest.fail(f"{path.name}: pip line {line!r} is not understood by tests/test_envs.py")
            else:
                spec.pip.append(line)
    return spec


# --- what the jobs import ------------------------------------------------------------------------------------


def local_module(name: str, roots: tuple[Path, ...]) -> Path | None:
    """The file (or namespace package folder) of repository module ``name``, or None if it is not ours."""
    parts = name.split(".")
    for root in roots:
        base = root.joinpath(*parts)
        if base.with_suffix(".py").is_file():
            return base.with_suffix(".py")
        if (base / "__init__.py").is_file():
            return base / "__init__.py"
        if base.is_dir() and any(base.rglob("*.py")):
            return base
    return None


def _package_of(path: Path, roots: tuple[Path, ...]) -> str:
    """The dotted package a file's relative imports start from."""
    for root in roots:
        if path.is_relative_to(root):
            parts = list(path.relative_to(root).with_suffix("").parts)
            return ".".join(parts if parts[-1] == "__init__" else parts[:-1])
    return ""


class _Imports(ast.NodeVisitor):
    """The modules a file may import at run time: ``(dotted name, line, lazy reference?)``.

    ``if TYPE_CHECKING:`` blocks and ``try:`` bodies whose handlers catch ImportError (optional imports)
    are left out; imports in functions are kept.
    """

    def __init__(self, package: str) -> None:
        self.package = package
        self.found: list[tuple[str, int, bool]] = []

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Try(self, node: ast.Try) -> None:
        caught = set()
        for handler in node.handlers:
            types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
            caught |= {t.id for t in types if isinstance(t, ast.Name)}
        body = [] if caught & OPTIONAL else node.body
        for child in [*body, *node.handlers, *node.orelse, *node.finalbody]:
            self.visit(child)

    visit_TryStar = visit_Try

    def visit_Import(self, node: ast.Import) -> None:
        self.found += [(alias.name, node.lineno, False) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".") if self.package else []
            base = base[:len(base) - node.level + 1]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        if module:
            self.found.append((module, node.lineno, False))
        # `from package import name` imports the submodule `name` when there is one
        self.found += [(f"{module}.{alias.name}".strip("."), node.lineno, True) for alias in node.names]

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            self.found.append((node.args[0].value, node.lineno, False))
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        # "module:Class" strings of the registries, imported on demand (FAMILIES, READERS, NetKind)
        if isinstance(node.value, str) and (match := LAZY_REF_RE.match(node.value)):
            self.found.append((match.group(1), node.lineno, True))


STDLIB = set(sys.stdlib_module_names) | {"__future__"}


@cache
def _file_imports(path: Path, roots: tuple[Path, ...]) -> tuple[tuple[str, int, bool], ...]:
    visitor = _Imports(_package_of(path, roots))
    visitor.visit(ast.parse(path.read_text(), filename=str(path)))
    return tuple(visitor.found)


def third_party_imports(scripts: list[Path]) -> dict[str, list[str]]:
    """Third-party top-level modules the scripts import, each with where (file:line) it is imported."""
    found: dict[str, list[str]] = {}
    for script in scripts:
        roots = (script.parent, *ROOTS)
        todo, seen = [script], set()
        while todo:
            path = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            if path.is_dir():  # a namespace package: nothing runs on import
                continue
            for name, line, lazy in _file_imports(path, roots):
                top = name.split(".")[0]
                if top in STDLIB or not top:
                    continue
                if local_module(top, roots) is None:
                    if not lazy:  # a lazy reference only counts when it names one of our modules
                        found.setdefault(top, []).append(f"{path.relative_to(REPO)}:{line}")
                    continue
                parts = name.split(".")
                for depth in range(1, len(parts) + 1):  # the packages on the way run their __init__
                    module = local_module(".".join(parts[:depth]), roots)
                    if module is not None:
                        todo.append(module)
    return found


@cache
def module_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def missing_from_env(env: Path, provided: set[str] | None = None) -> dict[str, str]:
    """Third-party modules the env's jobs import that no distribution the env gets by name provides."""
    # Python scripts only: an R or shell job's needs are not read here
    scripts = sorted({rule.script for rule in env_rules().get(env, []) if rule.script and rule.script.suffix == ".py"})
    provided = env_spec(env).provided() if provided is None else provided
    missing = {}
    for module, where in sorted(third_party_imports(scripts).items()):
        distributions = module_distributions().get(module)
        if not distributions:
            missing[module] = (f"imported at {where[0]}, but no installed distribution provides it "
                               "(add its distribution to setup.cfg)")
        elif not {canonical(d) for d in distributions} & provided:
            missing[module] = (f"imported at {where[0]}; distribution {' or '.join(sorted(distributions))} "
                               f"is not among {env.name}'s packages or the setup.cfg requirements it installs")
    return missing


# --- the tests -----------------------------------------------------------------------------------------------


def test_rules_are_read() -> None:
    rules = workflow_rules()
    assert any(rule.conda and rule.script for rule in rules), "no rule with conda: and script: found"
    assert all(rule.conda is not None for rule in rules if rule.script is not None), \
        [f"{rule.where} ({rule.name}) runs a script but declares no conda: env"
         for rule in rules if rule.script is not None and rule.conda is None]


def test_every_conda_path_exists() -> None:
    missing = [f"{rule.where} ({rule.name}): {rule.conda}" for rule in workflow_rules()
               if rule.conda is not None and not rule.conda.is_file()]
    assert missing == []
    missing = [f"{rule.where} ({rule.name}): {rule.script}" for rule in workflow_rules()
               if rule.script is not None and not rule.script.is_file()]
    assert missing == []


def test_every_env_file_is_used() -> None:
    assert ENV_FILES and set(ENV_FILES) == set(env_rules()), \
        f"env files {[p.name for p in ENV_FILES]} vs used {sorted(p.name for p in env_rules())}"


@pytest.mark.parametrize("env", ENV_FILES, ids=lambda p: p.name)
def test_env_installs_this_checkout(env: Path) -> None:
    """The pip section installs the project from the checkout the env file's copy sits two folders below."""
    spec = env_spec(env)
    assert spec.project_extras is not None, f"{env.name} does not install the project (-e ../..[extras])"
    assert spec.project_paths and all(path == REPO for path in spec.project_paths), \
        f"{env.name}: project path resolves to {spec.project_paths} from {ENV_COPY_DIR}, not {REPO}"
    project_requirements(spec.project_extras)  # every extra is declared
    for constraint in spec.constraints:
        assert constraint.is_file(), f"{env.name}: constraints {constraint} (from {ENV_COPY_DIR}) not found"
    assert any(package.startswith("python") for package in spec.conda) and "pip" in spec.conda


@pytest.mark.parametrize("env", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_torch_exactly_like_the_project(env: Path) -> None:
    pins = {re.sub(r"\s+", "", line) for line in env_spec(env).pip if requirement_name(line) == "torch"}
    project = {re.sub(r"\s+", "", line) for line in project_requirements(()) if requirement_name(line) == "torch"}
    constraints = {line for line in _lines((ENVS / "constraints.txt").read_text()) if requirement_name(line) == "torch"}
    assert len(project) == 1 and next(iter(project)).startswith("torch==")
    assert pins == project == constraints, (env.name, pins, project, constraints)


@pytest.mark.parametrize("env", ENV_FILES, ids=lambda p: p.name)
def test_env_provides_every_import_of_its_jobs(env: Path) -> None:
    assert missing_from_env(env) == {}


@pytest.mark.parametrize("env", ENV_FILES, ids=lambda p: p.name)
def test_env_file_changes_with_the_requirements(env: Path) -> None:
    """Snakemake names an env after a hash of the env file's text alone; the digest line puts the
    requirements the env installs (setup.cfg and the constraints) into that text, so editing them rebuilds it."""
    found = DIGEST_RE.findall(env.read_text())
    expected = env_spec(env).digest()
    assert found == [expected], f"{env.name}: set its line to  # requirements digest: {expected}"


def test_the_check_catches_a_dropped_requirement() -> None:
    """Today's kind of drift: a probe job imports safetensors, and an env that stops providing it fails."""
    probe = ENVS / "probe.yaml"
    assert probe in env_rules()
    provided = env_spec(probe).provided()
    assert "safetensors" in provided
    assert "safetensors" in missing_from_env(probe, provided - {"safetensors"})


def test_the_walk_follows_lazy_imports() -> None:
    """Extraction imports diffusers and transformers only inside functions and registry entries."""
    scripts = sorted({rule.script for rule in env_rules()[ENVS / "extract.yaml"]})
    found = third_party_imports(scripts)
    assert {"torch", "diffusers", "transformers"} <= set(found), sorted(found)


def test_a_hand_kept_env_that_lacks_a_requirement_fails(tmp_path: Path) -> None:
    """The drift this test exists for: probe.yaml once listed its packages by hand, without safetensors."""
    hand_kept = tmp_path / "probe.yaml"
    hand_kept.write_text(yaml.safe_dump({"channels": ["conda-forge"], "dependencies": [
        "python=3.11", "pip", {"pip": ["torch==2.13.0", "zarr>=3.1,<3.2", "numcodecs>=0.16", "dask[array]",
                                       "numpy>=2", "scikit-learn>=1.6", "matplotlib", "tqdm", "pillow", "av"]}]}))
    spec = env_spec(hand_kept)
    assert spec.project_extras is None
    assert "safetensors" in missing_from_env(ENVS / "probe.yaml", spec.provided())
