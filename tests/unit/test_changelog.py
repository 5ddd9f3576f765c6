"""changelogs/: the fragments and changelog.yaml pass antsibull-changelog's linters, and
CHANGELOG.rst is what antsibull-changelog generates from changelog.yaml (never edited by
hand: add a fragment, then `antsibull-changelog release --version X [--update-existing]`)."""
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ANTSIBULL_CHANGELOG = os.path.join(os.path.dirname(sys.executable), "antsibull-changelog")


def antsibull_changelog(*args, cwd=REPO):
    proc = subprocess.run([ANTSIBULL_CHANGELOG] + list(args), cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    return proc.returncode, proc.stdout


def test_fragments_lint_clean():
    assert antsibull_changelog("lint") == (0, "")


def test_changelog_yaml_lints_clean():
    assert antsibull_changelog("lint-changelog-yaml", "changelogs/changelog.yaml") == (0, "")


def test_changelog_rst_is_generated_from_changelog_yaml(tmp_path):
    shutil.copy(os.path.join(REPO, "galaxy.yml"), str(tmp_path))
    shutil.copytree(os.path.join(REPO, "changelogs"), str(tmp_path / "changelogs"))
    rc, out = antsibull_changelog("generate", cwd=str(tmp_path))
    assert rc == 0, out
    with open(os.path.join(REPO, "CHANGELOG.rst")) as f:
        committed = f.read()
    assert (tmp_path / "CHANGELOG.rst").read_text() == committed, \
        "CHANGELOG.rst differs from what `antsibull-changelog generate` makes of changelogs/changelog.yaml"
