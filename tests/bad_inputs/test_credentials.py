"""Credentials on the command line: refused in one line before Hydra writes any override to
disk, and ordinary overrides are not mistaken for them."""

from __future__ import annotations

import pytest

from cotfaith.validate import credential_error
from tests.bad_inputs.corpus import EXIT_CONFIG, one_line
from tests.helpers import run_cli

# (override, applied with credential_error: refused naming the environment variable way)
CREDENTIALS = [
    "+model.api_key=sk-abc123def456ghi789jkl0mno",
    "+model.api_key=hunter2",
    "++model.token=abc",
    "+model.password=p",
    "+secret=xyz",
    "model.name=sk-proj-abcdefghijklmnop1234",
    "model.api_key_env=sk-ant-api03-abcdefghij1234567890",
    "mistake_model.api_key_env=sk-abc123def456ghi789jkl",
    "+model.headers.x-api-key=k",
    "prompts.path=/tmp/sk-abc123def456ghi789jkl0.yaml",
    "+hf_token=hf_abcdefghij0123456789xyz",
    "task.name=ghp_abcdefghij0123456789xyzw",
    "+model.default_headers.Authorization=Bearer gsk_abcdefghijklmnopqrstuvwxyz012345",
    "model.base_url=http://localhost:8000/v1?token=abc123def456ghi",
    "model.base_url=https://user:hunter2@example.org/v1",
    "paraphrase_model.key=abc",
    "+model.client_secret=abc",
    "+model.extra_body.access_token=abc",
    "sk-abcdefghijklmnopqrstuvwxyz0123",
]


@pytest.mark.parametrize("override", CREDENTIALS)
def test_credentials_on_the_command_line_are_refused(override):
    error = credential_error([override])
    assert error is not None
    one_line(error)
    assert "environment variable" in error or "NAME of an environment variable" in error


ORDINARY = [
    "model.api_key_env=OPENAI_API_KEY",
    "model.api_key_env=choice(OPENAI_API_KEY,OTHER_KEY)",
    "model.api_key_env='MY_KEY'",
    "task.n_questions=5",
    "model.name=gpt-4o-mini",
    "cache.path=outputs/key_cache.sqlite",
    "+experiment=lanham2023_smoke",
    "task.name=sk-learn-baseline",
    "task.data_dir=hf_datasets_cache",
]


@pytest.mark.parametrize("override", ORDINARY)
def test_ordinary_overrides_are_not_mistaken_for_credentials(override):
    assert credential_error([override]) is None


@pytest.mark.slow
def test_a_key_on_the_command_line_never_reaches_the_disk(tmp_path):
    secret = "sk-abcdefghijklmnopqrstuvwxyz0123"
    proc = run_cli(tmp_path, f"+model.api_key={secret}", "hydra.run.dir=out", check=False)
    assert proc.returncode == EXIT_CONFIG
    one_line(proc.stderr)
    assert proc.stderr.startswith("cotfaith: error: model.api_key")
    assert secret not in proc.stderr + proc.stdout
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(secret not in p.read_text(errors="ignore") for p in written)
    assert not (tmp_path / "out").exists()
