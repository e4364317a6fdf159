"""`init`: make the node key (secp256k1, 0600 in a 0700 home) and config.toml, once.

The key is written atomically; state.json records the address and nodeKeyHash so that
`status` never has to read the key. A home whose state.json remembers an address but whose
key is missing was a node: init refuses (restore the key) unless --force. `--force` replaces
an existing key: the old node is
orphaned (it can no longer sign), so everything state.json knew about it (nodeId, tier,
last attach) is dropped, and a `node_id = N` line in config.toml is commented out with a
note naming the old address, because that nodeId is registered to the old key's hash.
"""
import os
import re
import stat
import time

import click

from node.atomic import write_atomic
from node.commands.clikit import common_options, emit
from node.errors import ConfigError
from node.home import Home
from node.keyfile import key_exists, missing_key_advice, read_key, write_key
from node.state import INITED, read_state


def _private_home(home: Home) -> str | None:
    """Create the home 0700; tighten an existing one that others can enter. Returns a note."""
    home.ensure()
    st = home.root.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{home.root} is not a folder; choose another --home")
    if st.st_uid != os.getuid():
        raise ConfigError(f"{home.root} belongs to another user (uid {st.st_uid}); "
                          "run init as that user or choose another --home")
    if st.st_mode & 0o077:
        os.chmod(home.root, 0o700)
        return f"tightened {home.root} from mode {stat.S_IMODE(st.st_mode):04o} to 0700"
    return None


def _old_address(home: Home, saved: dict) -> str | None:
    """The address of the key being replaced: state.json's record, else derived from the key."""
    if isinstance(saved.get("address"), str):
        return saved["address"]
    try:
        from node.identity import address_of
        return address_of(read_key(home))
    except (ConfigError, ValueError):
        return None


def _orphan_config_node_id(home: Home, old_address: str | None) -> str | None:
    """Comment out `node_id = N` in config.toml (it names the old node). Returns a note."""
    try:
        text = home.config.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    pattern = re.compile(r"^(node_id\s*=\s*(\S+).*)$", re.M)
    match = pattern.search(text)
    if not match:
        return None
    stamp = time.strftime("%Y-%m-%d")
    note = (f"# {match.group(1).strip()}  # belonged to the old key "
            f"{old_address or '(unknown address)'}; commented out by init --force on {stamp}")
    write_atomic(home.config, pattern.sub(lambda _: note, text, count=1).encode(), mode=0o600)
    return (f"commented out node_id = {match.group(2)} in {home.config}: that nodeId belongs "
            "to the old key; register the new nodeKeyHash and use the nodeId it gets")


@click.command("init")
@click.option("--force", is_flag=True,
              help="Replace an existing key. The old node is orphaned: it can no longer sign.")
@common_options
def cmd(home: Home, as_json: bool, force: bool) -> None:
    """Make the node key and config.toml (run once), and print the nodeKeyHash to register."""
    from node.identity import address_of, new_secret, node_key_hash
    from node.settings import ENV_NODE_ID, write_default_config

    saved = read_state(home)
    remembered = isinstance(saved.get("address"), str)
    had_key = key_exists(home.key)
    replacing = had_key or remembered
    if home.key.is_dir():
        raise ConfigError(f"{home.key} is a folder, not a key file; move it aside, then run "
                          "init again")
    if not had_key and remembered and not force:
        raise ConfigError(f"{missing_key_advice(home)} (the old node is then orphaned)")
    if replacing and not force:
        known = saved.get("address")
        raise ConfigError(
            f"a node key already exists at {home.key}"
            + (f" (address {known})" if isinstance(known, str) else "")
            + "; it was left untouched. Keep it, or replace it with: parallelix-node init --force "
              "(the old node is then orphaned)")
    notes = [n for n in [_private_home(home)] if n]
    old_address = _old_address(home, saved) if replacing else None

    secret = new_secret()
    address = address_of(secret)
    key_hash = node_key_hash(address)
    write_key(home.key, secret)
    del secret
    write_default_config(home)
    if replacing:
        note = _orphan_config_node_id(home, old_address)
        if note:
            notes.append(note)
    if replacing and os.environ.get(ENV_NODE_ID):
        notes.append(f"{ENV_NODE_ID} is set in your environment; it names the old node: unset it")

    # A new identity: keep only what does not belong to a node (the cached /network answer).
    fresh = {"state": INITED, "address": address, "nodeKeyHash": key_hash,
             "initedAtMs": time.time_ns() // 1_000_000}
    if isinstance(saved.get("network"), dict):
        fresh["network"] = saved["network"]
    import json
    write_atomic(home.state, (json.dumps(fresh, indent=2, sort_keys=True) + "\n").encode(),
                 mode=0o600)

    next_steps = [
        f"Register the node in the ParalleliX Console with nodeKeyHash {key_hash} "
        "(your staking wallet signs registerNode); it gives you a nodeId.",
        "Then run: parallelix-node start --node-id N",
    ]
    doc = {"address": address, "nodeKeyHash": key_hash, "state": INITED, "home": str(home.root),
           "key": str(home.key), "config": str(home.config), "replaced": replacing,
           "oldAddress": old_address, "notes": notes, "next": next_steps}
    lines = []
    if replacing:
        lines += [f"Replaced the node key at {home.key}." if had_key else
                  f"Created a new node key at {home.key} (the old one was missing).",
                  f"The old node {old_address or '(address unknown)'} is orphaned: nothing can "
                  "sign for it any more; retire it in the Console.", ""]
    else:
        lines += [f"Created the node key at {home.key} (mode 0600).", ""]
    lines += [f"  address      {address}", f"  nodeKeyHash  {key_hash}", ""]
    lines += [f"note: {n}" for n in notes] + ([""] if notes else [])
    lines += ["Next:"] + [f"  {i}. {s}" for i, s in enumerate(next_steps, 1)]
    lines += ["", f"Back up {home.key}: it is the only copy of this node's key."]
    emit(as_json, doc, lines)
