"""The package as a hospital installs it: the wheel built from the sources, installed (not
editable) in a fresh virtualenv, run from another directory with no PYTHONPATH — so the
migrations, the demo's catalogue and every module must be in the wheel, not just in the
checkout. The Dockerfile does the same steps. No test here touches the suite's database, so
the module runs in the suite's SQLite run only."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from bot.dev.fakeslack import FakeSlack
from tests.harness import use_postgres
from tests.procs import REPO, TOKEN, write_catalogue

# Everything here runs on a SQLite file and the demo's own SQLite database, whatever the
# suite's database: the module belongs to the suite's SQLite run only (as tests/dev/test_demo).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        use_postgres(), reason="the installed package runs on SQLite: run in the SQLite run"
    ),
]

SOURCES = ("pyproject.toml", "README.md", "bot", "handlers", "storage")


def run(args: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 180):
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a new virtualenv holding the built wheel (and nothing of the checkout)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:  # a copy: building writes build/ and *.egg-info next to the sources
        if (REPO / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(REPO / name, src / name, ignore=ignore)
        else:
            shutil.copy(REPO / name, src / name)
    built = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(root / "wheels"), str(src)],
        cwd=root,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (root / "wheels").glob("careloop-*.whl")
    venv = root / "venv"
    made = run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    added = run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         "--no-index", str(wheel)],
        cwd=root,
    )  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    # The dependencies come from this interpreter's site-packages, added as a plain path:
    # its .pth files (this checkout's editable install among them) are not processed.
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                  cwd=root).stdout.strip()  # fmt: skip
    Path(purelib, "careloop-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def clean_env(**extra: str) -> dict[str, str]:
    """No CareLoop variable, no PYTHONPATH: only what the test gives."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env.update(extra)
    return env


def test_the_installed_package_runs_outside_the_checkout(installed: Path, tmp_path: Path):
    where = run([str(installed), "-c", "import bot, storage; print(bot.__file__, storage.__file__)"],
                cwd=tmp_path, env=clean_env())  # fmt: skip
    assert where.returncode == 0, where.stderr
    assert str(REPO) not in where.stdout and str(installed.parents[1]) in where.stdout


def test_installed_check_refuses_an_empty_environment_in_one_line(installed: Path, tmp_path: Path):
    done = run([str(installed), "-m", "bot", "check"], cwd=tmp_path, env=clean_env())
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "FAIL  environment: SLACK_BOT_TOKEN is required (the bot token (xoxb-…) from OAuth & "
        "Permissions); set it or SLACK_BOT_TOKEN_FILE"
    ]
    assert "Traceback" not in done.stderr


def test_installed_migrate_and_check_pass_against_a_fake_slack(installed: Path, tmp_path: Path):
    catalogue = write_catalogue(tmp_path / "consult.toml")
    with FakeSlack() as slack:
        env = clean_env(
            SLACK_BOT_TOKEN=TOKEN,
            SLACK_API_URL=slack.url,
            DATABASE_URL=f"sqlite:///{tmp_path / 'careloop.db'}",
            CONSULT_CONFIG=str(catalogue),
        )
        migrated = run([str(installed), "-m", "bot", "migrate"], cwd=tmp_path, env=env)
        assert migrated.returncode == 0, migrated.stderr  # the shipped migrations ran
        done = run([str(installed), "-m", "bot", "check"], cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert all(line.startswith("ok") for line in done.stdout.splitlines()), done.stdout


def test_installed_demo_plays_from_another_directory(installed: Path, tmp_path: Path):
    done = run([str(installed), "-m", "bot", "demo", "--speed", "2"], cwd=tmp_path,
               env=clean_env())  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "checks passed" in done.stdout
