"""The Home Assistant add-on's files agree with the image, the package and each other."""

from __future__ import annotations

import os
import re
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mqtt_backup import __version__
from mqtt_backup.config.loader import STATE_DIR_ENV
from mqtt_backup.config.supervisor import (
    ADDON_HTTP,
    ADDON_HTTP_PORT,
    ADDON_STATE_DIR,
    LOG_LEVELS,
    OPTIONS_PATH,
)

ROOT = Path(__file__).resolve().parents[2]
ADDON = ROOT / "addon"
DOCKERFILE = (ROOT / "Dockerfile").read_text()
# Home Assistant's architecture names → the ones Docker gives the Dockerfile (TARGETARCH).
DOCKER_ARCH = {"amd64": "AMD64", "aarch64": "ARM64"}


@pytest.fixture(scope="module")
def addon() -> dict[str, Any]:
    return yaml.safe_load((ADDON / "config.yaml").read_text())


def test_the_repository_holds_one_addon() -> None:
    # The Supervisor takes every config.json/yaml/yml under the repository, outside folders
    # whose name starts with a dot, for an add-on.
    found = [
        p.relative_to(ROOT)
        for p in ROOT.glob("**/config.*")
        if p.suffix in (".json", ".yaml", ".yml")
        and not any(part.startswith(".") for part in p.relative_to(ROOT).parts)
    ]
    assert found == [Path("addon/config.yaml")]
    assert yaml.safe_load((ROOT / "repository.yaml").read_text())["name"] == "mqtt-backup"


def test_the_addon_runs_the_image_of_this_version(addon: dict[str, Any]) -> None:
    assert addon["version"] == __version__  # the tag the Supervisor pulls
    assert re.fullmatch(r"[a-z0-9_]+", addon["slug"])
    assert {"amd64", "aarch64"} <= set(addon["arch"])
    for arch in addon["arch"]:
        assert f"ARG RCLONE_SHA256_{DOCKER_ARCH[arch]}=" in DOCKERFILE, arch


def test_broker_folders_and_lifecycle(addon: dict[str, Any]) -> None:
    assert addon["services"] == ["mqtt:need"]
    mapped = {m["type"]: m for m in addon["map"]}
    assert set(mapped) == {"addon_config", "backup", "share", "media"}
    assert all(m["read_only"] is False for m in mapped.values())
    # The add-on's config folder is mounted at /config, where the image looks for both files.
    assert "path" not in mapped["addon_config"]
    assert "MQTT_BACKUP_CONFIG=/config/mqtt-backup.yaml" in DOCKERFILE
    assert "RCLONE_CONFIG=/config/rclone/rclone.conf" in DOCKERFILE
    # A nested volume would hide the rclone folder of the mounted /config.
    [volumes] = re.findall(r"^VOLUME (.*)$", DOCKERFILE, re.MULTILINE)
    assert not [v for v in yaml.safe_load(volumes) if v.startswith("/config/")]
    # State in the add-on's storage, where its options are too; healthcheck reads it there.
    assert addon["environment"][STATE_DIR_ENV] == str(ADDON_STATE_DIR) == "/data"
    assert OPTIONS_PATH.parent == ADDON_STATE_DIR
    # No init in the image, so Docker's stays on; serve needs up to 30 s to stop.
    assert addon.get("init", True) is True and addon["timeout"] > 30
    assert "HEALTHCHECK" in DOCKERFILE


def test_the_watchdog_asks_the_port_serve_listens_on(addon: dict[str, Any]) -> None:
    # /livez, not /healthz: a broker that is away must not get the add-on restarted.
    assert addon["watchdog"] == f"http://[HOST]:[PORT:{ADDON_HTTP_PORT}]/livez"
    assert ADDON_HTTP.address == ("0.0.0.0", ADDON_HTTP_PORT)  # noqa: S104 - the add-on's
    # Not on the host's network unless the user maps it: the endpoint has no authentication.
    assert addon["ports"] == {f"{ADDON_HTTP_PORT}/tcp": None}
    translations = yaml.safe_load((ADDON / "translations" / "en.yaml").read_text())
    assert set(translations["network"]) == set(addon["ports"])


def test_options_schema_and_translations_agree(addon: dict[str, Any]) -> None:
    translations = yaml.safe_load((ADDON / "translations" / "en.yaml").read_text())
    assert set(addon["options"]) == set(addon["schema"]) == set(translations["configuration"])
    choices = re.fullmatch(r"list\((.*)\)", addon["schema"]["log_level"])
    assert choices is not None
    assert [c.upper() for c in choices.group(1).split("|")] == list(LOG_LEVELS)
    assert addon["options"]["log_level"] in choices.group(1).split("|")


@pytest.mark.parametrize(("name", "size"), [("icon.png", (128, 128)), ("logo.png", (250, 100))])
def test_images(name: str, size: tuple[int, int]) -> None:
    head = (ADDON / name).read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    assert struct.unpack(">II", head[16:24]) == size


def entrypoint(*, token: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "SUPERVISOR_TOKEN"}
    if token is not None:
        env["SUPERVISOR_TOKEN"] = token
    result = subprocess.run(
        ["sh", str(ROOT / "docker" / "entrypoint.sh"), "id", "-u"],
        capture_output=True, text=True, env=env, check=True, timeout=10,
    )  # fmt: skip
    return result.stdout.strip()


def test_the_entrypoint_drops_root_except_as_an_addon() -> None:
    if os.getuid() == 0:
        assert entrypoint(token=None) == "1000"
        assert entrypoint(token="t0ken") == "0"  # the add-on's folders belong to root
    else:
        # Started with --user: the command runs as that user, whatever else is set.
        assert entrypoint(token=None) == str(os.getuid())


def test_the_release_publishes_the_image_the_addon_pulls() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    steps = workflow["jobs"]["image"]["steps"]
    build = next(s for s in steps if str(s.get("uses", "")).startswith("docker/build-push"))
    addon = yaml.safe_load((ROOT / "addon" / "config.yaml").read_text())
    tags = build["with"]["tags"].splitlines()
    assert f"{addon['image']}:${{{{ env.VERSION }}}}" in tags
    platforms = {p.removeprefix("linux/") for p in build["with"]["platforms"].split(",")}
    assert platforms == {"arm64" if a == "aarch64" else a for a in addon["arch"]}
