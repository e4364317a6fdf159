"""node.identity derives addresses and signs with coincurve alone; eth-keys and eth-account,
independent implementations, must agree on every key."""
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys import keys

from node.identity import Signer, address_of, new_secret


def test_address_of_a_known_key():
    # private key 1: a vector every Ethereum library shares
    assert address_of((1).to_bytes(32, "big")) == "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"


def test_addresses_and_signatures_match_eth_keys_and_eth_account():
    for _ in range(100):
        secret = new_secret()
        assert address_of(secret) == keys.PrivateKey(secret).public_key.to_checksum_address()
        text = "parallelix-node:result:req_0001"
        ours = Signer(secret).sign(text)
        theirs = Account.sign_message(encode_defunct(text=text), private_key=secret)
        assert ours == "0x" + bytes(theirs.signature).hex()
