# -*- test-case-name: tests.unit.test_config -*-
"""
Secrets kept out of the configuration file: read from the files
(C{*_file}) and environment variables (C{*_env}) it names, once at load
time, and merged into the model.

A problem names the key that pointed at the secret and never quotes the
secret itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import attrs

from alertgateway.config._schema import Problem
from alertgateway.config.delivery import AlertProcessorConfig
from alertgateway.config.state import RedisConfig
from alertgateway.config.webhook import AuthConfig, AuthType, SignatureScheme
from alertgateway.guards.signatures import decode_standard_secret

__all__ = ["resolve_auth", "resolve_processor", "resolve_redis"]


def _read_secret_file(path: str, where: str, problems: list[Problem]) -> tuple[str, ...]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        # The error's name only: its text could quote the file.
        problems.append(Problem(where, f"cannot read {path}: {type(e).__name__}"))
        return ()
    secrets = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not secrets:
        problems.append(Problem(where, f"{path} holds no secret"))
    return secrets


def _read_secret_env(name: str, where: str, environ: Mapping[str, str], problems: list[Problem]) -> tuple[str, ...]:
    value = (environ.get(name) or "").strip()
    if not value:
        problems.append(Problem(where, f"environment variable {name} is not set"))
        return ()
    return (value,)


def _password(
    given: str | None,
    file: str | None,
    env: str | None,
    where: str,
    environ: Mapping[str, str],
    problems: list[Problem],
    key: str = "password",
) -> str | None:
    """
    The password (or other single secret, C{key}) kept at C{where}: from
    C{<key>_env} if set, else from the first line of C{<key>_file}, else
    as given.
    """
    password = given
    if file:
        password = next(iter(_read_secret_file(file, f"{where}.{key}_file", problems)), password)
    if env:
        password = next(iter(_read_secret_env(env, f"{where}.{key}_env", environ, problems)), password)
    return password


def _check_standard_secrets(auth: AuthConfig, where: str, sources: list[tuple[str, tuple[str, ...]]]) -> list[Problem]:
    """
    Standard Webhooks secrets are checked where they were given, so the
    message points at the key (never at the secret itself).
    """
    if auth.type != AuthType.HMAC or auth.scheme != SignatureScheme.STANDARD:
        return []
    found = []
    for key, secrets in sources:
        for secret in secrets:
            try:
                decode_standard_secret(secret)
            except ValueError as e:
                found.append(Problem(f"{where}.{key}", str(e)))
                break
    return found


def resolve_auth(auth: AuthConfig, where: str, environ: Mapping[str, str], problems: list[Problem]) -> AuthConfig:
    """
    Merge secrets kept in files and the environment into the lists, and
    check that they can be used.

    @param where: The key path of C{auth}, which problems start with.
    """
    tokens = auth.tokens
    if auth.token_file:
        tokens += _read_secret_file(auth.token_file, f"{where}.token_file", problems)
    if auth.token_env:
        tokens += _read_secret_env(auth.token_env, f"{where}.token_env", environ, problems)
    from_file = _read_secret_file(auth.secret_file, f"{where}.secret_file", problems) if auth.secret_file else ()
    from_env = _read_secret_env(auth.secret_env, f"{where}.secret_env", environ, problems) if auth.secret_env else ()
    problems.extend(
        _check_standard_secrets(
            auth,
            where,
            [
                ("secret", (auth.secret,) if auth.secret else ()),
                ("secrets", auth.secrets),
                ("secret_file", from_file),
                ("secret_env", from_env),
            ],
        )
    )
    secrets = auth.secrets + from_file + from_env
    password = _password(auth.password, auth.password_file, auth.password_env, where, environ, problems)
    users = []
    for index, user in enumerate(auth.users):
        user_where = f"{where}.users[{index}]"
        user_password = _password(user.password, user.password_file, user.password_env, user_where, environ, problems)
        # A file or variable that gave nothing is already reported by key.
        if not user_password and not (user.password_file or user.password_env):
            problems.append(Problem(f"{user_where}.password", "is required (or password_file, password_env)"))
        users.append(attrs.evolve(user, password=user_password))
    if auth.username and not password and not (auth.password_file or auth.password_env):
        problems.append(Problem(f"{where}.password", "is required with username (or password_file, password_env)"))
    return attrs.evolve(auth, tokens=tokens, secrets=secrets, password=password, users=tuple(users))


def resolve_redis(redis: RedisConfig, environ: Mapping[str, str], problems: list[Problem]) -> RedisConfig:
    """
    Merge the Redis password kept in a file or the environment into
    C{state.redis}.
    """
    password = _password(redis.password, redis.password_file, redis.password_env, "state.redis", environ, problems)
    return attrs.evolve(redis, password=password)


def resolve_processor(
    processor: AlertProcessorConfig, environ: Mapping[str, str], problems: list[Problem]
) -> AlertProcessorConfig:
    """
    Merge the processor's credential kept in a file or the environment
    into C{alert_processor.auth_secret}.
    """
    secret = _password(
        processor.auth_secret,
        processor.auth_secret_file,
        processor.auth_secret_env,
        "alert_processor",
        environ,
        problems,
        key="auth_secret",
    )
    if secret is not None and ("\r" in secret or "\n" in secret):
        problems.append(Problem("alert_processor.auth_secret", "must be one line"))
    return attrs.evolve(processor, auth_secret=secret)
