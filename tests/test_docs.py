"""The repository's documentation stands on its own: it names no file outside the repository, and every
relative link and every repository path it quotes exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = sorted([REPO / "README.md", REPO / "CONTRIBUTING.md", *(REPO / "docs").rglob("*.md"),
                    *(REPO / "benchmarks" / "results").glob("*.md")])

#: design notes and papers that live outside the repository; docs must say what users need themselves
FORBIDDEN = ("METHODS.md", "DESIGN.md", "shared/seeds", "/work/")
#: the one outside path docs may name: the default of $ADAKIT_DATA (data is found through that variable)
ALLOWED_OUTSIDE: tuple[str, ...] = ()

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
#: `folder/file` quoted in backticks, for the repository's own top-level folders
REPO_PATH = re.compile(r"`((?:adakit|benchmarks|configs|docs|tests|examples|\.ci)/[A-Za-z0-9_./-]*[A-Za-z0-9_-])"
                       r"(?:::([A-Za-z0-9_]+))?`")


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def _without_code_blocks(text: str) -> str:
    """Markdown with fenced code blocks blanked (links are not links there); line numbers kept."""
    return re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)


def test_doc_files_are_found():
    names = {_rel(p) for p in DOC_FILES}
    assert {"README.md", "CONTRIBUTING.md", "docs/methods.md", "docs/architecture.md", "docs/index.md"} <= names


@pytest.mark.parametrize("doc", DOC_FILES, ids=_rel)
def test_no_reference_outside_the_repository(doc: Path):
    text = doc.read_text(encoding="utf-8")
    problems = []
    for n, line in enumerate(text.splitlines(), 1):
        for name in FORBIDDEN:
            if name in line:
                problems.append(f"{_rel(doc)}:{n}: names {name!r}")
        for m in re.finditer(r"\.\./shared\S*", line):
            if not m.group(0).startswith(ALLOWED_OUTSIDE):
                problems.append(f"{_rel(doc)}:{n}: names {m.group(0)!r} (outside the repository)")
        for m in re.finditer(r"(?<![\w.$])/(?:work|home|tmp|Users|mnt)/\S+", line):
            problems.append(f"{_rel(doc)}:{n}: absolute path {m.group(0)!r}")
    assert not problems, "\n".join(problems)


CODE_FILES = sorted(p for p in [*(REPO / "adakit").rglob("*.py"), *(REPO / "benchmarks").glob("*.py"),
                                 *(REPO / "benchmarks").glob("*.yaml"), *(REPO / "benchmarks").glob("*.sh"),
                                 *(REPO / "configs").glob("*.yaml")])


def test_code_and_configs_name_no_file_outside_the_repository():
    """What users run and read beside the docs (the package, benchmark scripts and specs, configs): no design
    note, paper folder or machine path of the developers' workplace."""
    problems = [f"{_rel(p)}:{n}: {name!r}" for p in CODE_FILES
                for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                for name in (*FORBIDDEN, "../shared") if name in line]
    assert len(CODE_FILES) > 50 and not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", DOC_FILES, ids=_rel)
def test_relative_links_point_to_files_in_the_repository(doc: Path):
    text = _without_code_blocks(doc.read_text(encoding="utf-8"))
    problems = []
    for m in LINK.finditer(text):
        target = m.group(1)
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL (http:, mailto:) or an anchor in the same page
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        line = text.count("\n", 0, m.start()) + 1
        if not path.is_relative_to(REPO):
            problems.append(f"{_rel(doc)}:{line}: link {target!r} leaves the repository")
        elif not path.exists():
            problems.append(f"{_rel(doc)}:{line}: link {target!r} points to a missing file")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", DOC_FILES, ids=_rel)
def test_quoted_repository_paths_exist(doc: Path):
    text = doc.read_text(encoding="utf-8")
    problems = []
    for m in REPO_PATH.finditer(text):
        path, test_name = REPO / m.group(1), m.group(2)
        line = text.count("\n", 0, m.start()) + 1
        if not path.exists():
            problems.append(f"{_rel(doc)}:{line}: {m.group(1)!r} does not exist")
        elif test_name and not re.search(rf"def {re.escape(test_name)}\(", path.read_text(encoding="utf-8")):
            problems.append(f"{_rel(doc)}:{line}: {m.group(1)} has no {test_name}")
    assert not problems, "\n".join(problems)


def test_checks_catch_bad_references(tmp_path: Path):
    """The patterns above find what they are meant to find (so the tests can fail)."""
    bad = "see [notes](../../elsewhere/METHODS.md) and `../shared/seeds/000.txt`, `adakit/nope.py`"
    assert [m.group(1) for m in LINK.finditer(bad)] == ["../../elsewhere/METHODS.md"]
    assert [m.group(1) for m in REPO_PATH.finditer(bad)] == ["adakit/nope.py"]
    assert any(name in bad for name in FORBIDDEN)
    assert not (REPO / "adakit" / "nope.py").exists()


def _module_file(dotted: str) -> Path | None:
    """The source file of module ``dotted`` inside the repository (package ``__init__.py`` or ``.py``), if any."""
    base = REPO.joinpath(*dotted.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def test_api_reference_names_existing_objects():
    """Every ``::: adakit.x.y`` of docs/api names a module in the repository or a class/function defined in one
    (mkdocs --strict checks this too; this keeps a renamed module from breaking the docs unnoticed)."""
    problems, seen = [], 0
    for page in sorted((REPO / "docs" / "api").glob("*.md")):
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            m = re.match(r":::\s+([\w.]+)\s*$", line)
            if not m:
                continue
            seen += 1
            parts = m.group(1).split(".")
            if _module_file(".".join(parts)):
                continue
            module = _module_file(".".join(parts[:-1]))
            name = parts[-1]
            if module is None or not re.search(rf"^(class|def) {name}\b|^{name}\s*[:=]", module.read_text(
                    encoding="utf-8"), flags=re.M):
                problems.append(f"{_rel(page)}:{n}: {m.group(1)} is not a module or object of the package")
    assert seen > 10
    assert not problems, "\n".join(problems)


def test_mkdocs_nav_pages_exist():
    text = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    pages = re.findall(r":\s+([\w./-]+\.md)\s*$", text, flags=re.M)
    assert "methods.md" in pages and "architecture.md" in pages
    missing = [p for p in pages if not (REPO / "docs" / p).is_file()]
    assert not missing, f"mkdocs.yml nav names missing pages: {missing}"


def test_every_built_in_method_is_documented():
    """A built-in strategy or objective has a row in the README's method tables and appears in docs/methods.md, a
    built-in validator a row in its README table (CONTRIBUTING, "Adding a method"; nothing checked it before)."""
    import re

    from adakit.registry import OBJECTIVES, STRATEGIES

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    methods = (REPO / "docs" / "methods.md").read_text(encoding="utf-8")
    rows = {name for line in readme.splitlines() if line.startswith("| `")
            for name in re.findall(r"`([a-z0-9_]+)`", line.split("|")[1])}
    for reg in (STRATEGIES, OBJECTIVES):
        for name in reg.names():
            if not reg.get(name).__module__.startswith("adakit."):
                continue  # (a test's or a user's method)
            assert name in rows, f"{reg.kind} {name!r}: no row in the README's method tables"
            assert f"`{name}`" in methods, f"{reg.kind} {name!r}: not in docs/methods.md"
    from adakit.registry import VALIDATORS

    for name in VALIDATORS.names():  # (validators: a row in the README's validator table)
        if VALIDATORS.get(name).__module__.startswith("adakit."):
            assert name in rows, f"validator {name!r}: no row in the README's validator table"


#: the development notes' names for the papers and the work items, which a reader of the repository cannot look up
#: (another project's issue is named as "upstream issue #N")
INTERNAL_NAME = re.compile(r"\bseed 00\d\b|(?<!upstream )\bissue #\d+\b|\bseed papers?\b")


def test_user_facing_text_names_papers_and_work_by_what_they_are():
    """README, docs and the package's docstrings (rendered in the API pages and by `adakit methods`) cite papers
    by their authors, not by the numbering of the development notes."""
    files = [REPO / "README.md", REPO / "CONTRIBUTING.md", *(REPO / "docs").rglob("*.md"),
             *(REPO / "adakit").rglob("*.py"), *(REPO / "benchmarks").glob("*.py"),
             *(REPO / "benchmarks").glob("*.yaml"), *(REPO / "benchmarks" / "results").glob("*.md")]
    problems = [f"{_rel(f)}:{n}: {m.group(0)!r}" for f in files
                for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
                for m in INTERNAL_NAME.finditer(line)]
    assert not problems, "\n".join(problems)


def test_every_exported_name_and_its_public_methods_have_docstrings():
    """The names of `adakit.__all__` are what users call; the API reference renders their docstrings (and those of
    the public methods of the classes they return). ActiveLoop.summary and ActiveLoop.write_outputs had none."""
    import inspect

    import adakit
    from adakit.run_model import RunModel

    missing = []
    for name in adakit.__all__:
        obj = getattr(adakit, name)
        if isinstance(obj, str):  # (__version__, DROP: values, documented where they are used)
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            for member, value in vars(obj).items():
                if not member.startswith("_") and (inspect.isfunction(value) or isinstance(value, property)) \
                        and not inspect.getdoc(value):
                    missing.append(f"{name}.{member}")
    for member, value in vars(RunModel).items():  # (what load_run returns)
        if not member.startswith("_") and (inspect.isfunction(value) or isinstance(value, property)) \
                and not inspect.getdoc(value):
            missing.append(f"RunModel.{member}")
    assert not missing, f"public names without a docstring: {missing}"
