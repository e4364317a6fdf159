"""`init`: key file and folder modes, identity as PROTOCOL.md defines it, refusal and --force."""
import json
import os
import stat

from eth_account import Account
from eth_hash.auto import keccak

from tests.conftest import one_error_line


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def secret_hex(home) -> str:
    text = (home / "node.key").read_text().strip()
    assert text.startswith("0x") and len(text) == 66
    return text[2:]


def test_init_makes_private_key_config_and_state(cli, home):
    r = cli("init", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert mode(home) == 0o700
    assert mode(home / "node.key") == 0o600
    assert mode(home / "config.toml") == 0o600
    assert mode(home / "state.json") == 0o600
    secret = secret_hex(home)
    # Independently of node.identity: eth-account's address, keccak of the 20 raw bytes.
    address = Account.from_key(bytes.fromhex(secret)).address
    assert doc["address"] == address
    assert doc["nodeKeyHash"] == "0x" + keccak(bytes.fromhex(address[2:])).hex()
    assert len(doc["nodeKeyHash"]) == 66 and doc["nodeKeyHash"] == doc["nodeKeyHash"].lower()
    assert doc["state"] == "INITED" and doc["replaced"] is False
    saved = json.loads((home / "state.json").read_text())
    assert saved["state"] == "INITED"
    assert saved["address"] == address and saved["nodeKeyHash"] == doc["nodeKeyHash"]
    assert secret not in r.stdout + r.stderr
    assert secret.lower() not in (home / "state.json").read_text().lower()


def test_init_plain_prints_identity_and_next_step(cli, home):
    r = cli("init")
    assert r.returncode == 0, r.stderr
    saved = json.loads((home / "state.json").read_text())
    assert saved["address"] in r.stdout and saved["nodeKeyHash"] in r.stdout
    assert "Console" in r.stdout and "start --node-id" in r.stdout
    assert secret_hex(home) not in r.stdout + r.stderr
    # the config is a valid (commented) TOML that load_settings accepts
    assert cli("status").returncode == 0


def test_second_init_refuses_and_leaves_key_untouched(cli, home):
    assert cli("init").returncode == 0
    before = (home / "node.key").read_bytes()
    inode = os.stat(home / "node.key").st_ino
    r = cli("init")
    assert r.returncode == 2
    line = one_error_line(r)
    assert "already exists" in line and "--force" in line
    assert (home / "node.key").read_bytes() == before
    assert os.stat(home / "node.key").st_ino == inode
    assert before.decode().strip()[2:] not in r.stdout + r.stderr


def test_init_force_orphans_old_node(cli, home):
    old = cli.json("init")
    (home / "config.toml").write_text((home / "config.toml").read_text() + "node_id = 4231\n")
    saved = json.loads((home / "state.json").read_text())
    saved.update(nodeId=4231, tier=3, network={"chainId": 8453, "contracts": {"A": "0x1"}})
    (home / "state.json").write_text(json.dumps(saved))
    old_key = (home / "node.key").read_bytes()

    r = cli("init", "--force")
    assert r.returncode == 0, r.stderr
    new = json.loads((home / "state.json").read_text())
    assert old["address"] in r.stdout and "orphaned" in r.stdout
    assert new["address"] in r.stdout and new["address"] != old["address"]
    assert (home / "node.key").read_bytes() != old_key
    assert mode(home / "node.key") == 0o600
    # knowledge of the old node is gone; the cached /network answer is kept
    assert "nodeId" not in new and "tier" not in new
    assert new["network"]["chainId"] == 8453
    config = (home / "config.toml").read_text()
    assert "\nnode_id = 4231" not in config and "# node_id = 4231" in config
    assert old["address"] in config
    status = cli.json("status")
    assert status["nodeId"] is None and status["address"] == new["address"]


def test_init_force_json_without_state_derives_old_address(cli, home):
    old = cli.json("init")
    (home / "state.json").unlink()
    doc = cli.json("init", "--force")
    assert doc["replaced"] is True and doc["oldAddress"] == old["address"]
    assert doc["address"] != old["address"]


def test_init_tightens_an_open_home(cli, home):
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    doc = cli.json("init")
    assert mode(home) == 0o700
    assert any("0700" in n for n in doc["notes"])


def test_unknown_flag_is_a_usage_error(cli, home):
    r = cli("init", "--frobnicate")
    assert r.returncode == 2
    assert "--frobnicate" in one_error_line(r)
    assert not (home / "node.key").exists()
