"""The deployment files keep their promises: the Dockerfile builds and installs the wheel as
tests/processes/test_wheel_install.py does and runs as a non-root user with a health check;
compose.yaml runs it on PostgreSQL with secrets from files; the systemd unit is hardened;
the runbook names the metrics to alert on; the docs no longer claim a scope the manifest
does not request."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def read(name: str) -> str:
    return (REPO / name).read_text(encoding="utf-8")


def test_the_dockerfile_installs_the_wheel_as_a_non_root_user_and_serves():
    text = read("Dockerfile")
    assert len(re.findall(r"^FROM ", text, re.M)) == 2  # multi-stage
    assert "pip wheel --no-deps --no-build-isolation" in text  # the wheel test's build
    assert "--no-index --find-links" in text  # only the built wheels are installed
    user = re.search(r"^USER (\S+)", text, re.M)
    assert user and not user.group(1).startswith(("root", "0"))
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.M)
    assert text.strip().splitlines()[-1] == 'CMD ["python", "-m", "bot", "serve"]'
    for copied in re.findall(r"^COPY (?!--)(\S+)", text, re.M):
        assert (REPO / copied).exists(), copied


def test_compose_runs_the_bot_on_postgresql_with_secrets_from_files():
    text = read("compose.yaml")
    assert "image: postgres:" in text and "build: ." in text
    for variable in ("DATABASE_URL_FILE", "SLACK_BOT_TOKEN_FILE", "SLACK_SIGNING_SECRET_FILE"):
        assert f"{variable}: /run/secrets/" in text


def test_the_systemd_unit_is_hardened_and_reads_credentials():
    text = read("docs/deploy/careloop.service")
    for line in (
        "Wants=network-online.target",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "EnvironmentFile=/etc/careloop/careloop.env",
        "Environment=SLACK_BOT_TOKEN_FILE=%d/slack_bot_token",
        "RestartPreventExitStatus=2",
        "ExecStart=/opt/careloop/venv/bin/python -m bot serve",
    ):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line


def test_the_runbook_says_what_to_alert_on_and_what_to_do():
    text = read("docs/runbook.md")
    for metric in (
        "careloop_outbox_oldest_pending_age_seconds",
        'careloop_slack_api_calls_total{outcome="ratelimited"}',
        "careloop_sweep_lag_seconds",
        "careloop_request_duration_seconds_count",
        "/readyz",
    ):
        assert metric in text, metric
    exported = read("bot/metrics.py") + read("bot/probes.py")
    for name in set(re.findall(r"careloop_[a-z_]+", text)):
        base = re.sub(r"_(count|sum|bucket)$", "", name)
        assert f'"{base}"' in exported, f"the runbook names {name}, which /metrics does not serve"
    for case in ("Outbox stuck", "429 storm", "Sweep lag", "Token revoked", "Database down"):
        assert f"### {case}" in text, case


def test_docs_do_not_claim_scopes_the_manifest_does_not_request():
    from bot.slack.scopes import BOT_SCOPES  # noqa: PLC0415 - the one list of scopes

    scope = re.compile(r"`((?:users|chat|channels|groups|im|mpim|files|team|reactions):[a-z._]+)`")
    for name in ("README.md", "docs/admin.md", "docs/security.md"):
        claimed = set(scope.findall(read(name)))
        assert claimed <= set(BOT_SCOPES), (name, sorted(claimed - set(BOT_SCOPES)))
