"""The layering in pyproject.toml ([tool.importlinter]), checked by import-linter itself: a package importing from a
layer above it (or a sibling it must not know) fails here, so it fails CI."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    return subprocess.run([exe, "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_every_import_linter_contract_is_kept():
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout and "broken" not in proc.stdout.replace("0 broken", "")


def test_an_upward_import_breaks_the_layers_contract(tmp_path):
    """The check has teeth: a copy of the package where the run stage imports the report stage fails it."""
    work = tmp_path / "copy"
    shutil.copytree(ROOT / "caffegen", work / "caffegen", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")
    trainer = work / "caffegen" / "run" / "trainer.py"
    trainer.write_text(trainer.read_text() + "\nfrom ..report import analysis  # noqa: E402,F401  (upward)\n")
    proc = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, '.'); "
                           "from importlinter.cli import lint_imports_command; lint_imports_command()"],
                          cwd=work, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "BROKEN" in proc.stdout and "caffegen.run.trainer -> caffegen.report.analysis" in proc.stdout, \
        proc.stdout[-3000:]


def test_each_package_docstring_names_each_of_its_modules():
    """docs/architecture.md sends a newcomer to a package's ``__init__`` for its map: every module is on it."""
    missing = []
    for init in sorted((ROOT / "caffegen").rglob("__init__.py")):
        doc = init.read_text(encoding="utf-8")
        for module in sorted(init.parent.glob("*.py")):
            if module.stem not in ("__init__", "__main__") and f":mod:`.{module.stem}`" not in doc:
                missing.append(f"{init.parent.relative_to(ROOT)}: {module.stem}")
        for sub in sorted(p for p in init.parent.iterdir() if (p / "__init__.py").is_file()):
            if f":mod:`.{sub.name}`" not in doc:
                missing.append(f"{init.parent.relative_to(ROOT)}: {sub.name}/")
    assert not missing, missing
