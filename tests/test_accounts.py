"""Resident accounts: storage (m007), password records and sealed keys, login throttling."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlite_utils import Database

from node.folder import read_key
from node.publish import init_node, publish
from protocol import signing
from storage import accounts
from storage.accounts import AccountError, NameTaken
from storage.database import open_database
from storage.roles import ADMIN_ROLES, RoleCache
from web import keys
from web.keys import LoginFailed, PasswordError, ScryptParams, Sealed, SealedKeyError
from web.throttle import LoginThrottle, Policy, address_key

from .conftest import NOW

#: Cheap scrypt for tests (the default is n = 2**17); the format records it either way.
FAST = ScryptParams(n=2**10, r=8, p=1)
PASSWORD = "correct horse battery"


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = open_database(tmp_path / "fora.db")
    yield database
    database.close()


def register(
    db: Database, name: str, password: str = PASSWORD, display: str | None = None
) -> tuple[Ed25519PrivateKey, accounts.Account]:
    key, sealed = keys.new_resident(password, FAST)
    account = accounts.create_account(
        db,
        name=name,
        display_name=display or name,
        password=sealed.password,
        sealed_key=sealed.sealed_key,
        public_key=signing.public_key_bytes(key),
        now=NOW,
    )
    return key, account


# -- password records and sealed keys ------------------------------------------------------


def test_login_unseals_the_residents_key(db: Database) -> None:
    key, account = register(db, "alice")
    found = accounts.get_account(db, "ALICE")
    assert found == account
    unsealed = keys.login(found, PASSWORD, FAST)
    assert unsealed.private_bytes_raw() == key.private_bytes_raw()


def test_wrong_password_and_unknown_name_fail_alike(db: Database) -> None:
    _, account = register(db, "alice")
    with pytest.raises(LoginFailed) as wrong:
        keys.login(account, "correct horse battery!", FAST)
    with pytest.raises(LoginFailed) as unknown:
        keys.login(accounts.get_account(db, "bob"), PASSWORD, FAST)
    with pytest.raises(LoginFailed) as not_text:
        keys.login(account, None, FAST)  # type: ignore[arg-type]
    assert str(wrong.value) == str(unknown.value) == str(not_text.value)
    assert str(wrong.value) == "wrong name or password"


def test_record_format_and_parameters(db: Database) -> None:
    _, account = register(db, "alice")
    version, params, salt, _verifier = account.password.split("$")
    assert version == "fora-scrypt-v1"
    assert params == "n=1024,r=8,p=1"
    assert keys.record_params(account.password) == FAST
    assert len(account.sealed_key) == 1 + 12 + 32 + 16
    assert account.sealed_key[0] == 1
    # Two records of the same password differ: fresh salt and nonce each time.
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    a, b = keys.seal(PASSWORD, key, FAST), keys.seal(PASSWORD, key, FAST)
    assert a.password != b.password
    assert a.sealed_key[1:13] != b.sealed_key[1:13]
    assert salt not in (a.password, b.password)


def test_default_parameters_are_recorded_and_upgraded() -> None:
    assert ScryptParams(n=2**17, r=8, p=1) == keys.DEFAULT_PARAMS
    key = signing.generate_private_key()
    public = signing.public_key_bytes(key)
    weak = keys.seal(PASSWORD, key, FAST)
    assert keys.needs_rehash(weak.password)
    strong = keys.change_password(PASSWORD, PASSWORD, weak, public)  # one 2**17 scrypt
    assert keys.record_params(strong.password) == keys.DEFAULT_PARAMS
    assert "$n=131072,r=8,p=1$" in strong.password
    assert not keys.needs_rehash(strong.password)
    assert keys.needs_rehash(strong.password, ScryptParams(n=2**18))


def test_verifier_and_sealing_key_are_separate_derivations() -> None:
    key = signing.generate_private_key()
    sealed = keys.seal(PASSWORD, key, FAST)
    params, salt, verifier = keys._parse(sealed.password)
    derived_verifier, sealing = keys._derive(PASSWORD, salt, params)
    assert derived_verifier == verifier
    assert sealing != verifier
    # Using the stored verifier as the sealing key does not open the sealed key.
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    blob = sealed.sealed_key
    with pytest.raises(InvalidTag):
        ChaCha20Poly1305(verifier).decrypt(
            blob[1:13], blob[13:], keys._aad(signing.public_key_bytes(key))
        )


def test_change_password_reseals_the_same_key(db: Database) -> None:
    key, account = register(db, "alice")
    old = Sealed(account.password, account.sealed_key)
    with pytest.raises(LoginFailed):
        keys.change_password("not my password", "new password 2", old, account.public_key, FAST)
    with pytest.raises(PasswordError):
        keys.change_password(PASSWORD, "short", old, account.public_key, FAST)
    new = keys.change_password(PASSWORD, "new password 2", old, account.public_key, FAST)
    accounts.set_password_record(
        db,
        account.id,
        old_password=account.password,
        password=new.password,
        sealed_key=new.sealed_key,
    )
    changed = accounts.get_account(db, "alice")
    assert changed is not None
    with pytest.raises(LoginFailed):
        keys.login(changed, PASSWORD, FAST)
    assert keys.login(changed, "new password 2", FAST).private_bytes_raw() == (
        key.private_bytes_raw()
    )
    # A second change from the same old record loses (it changed meanwhile).
    with pytest.raises(AccountError, match="changed meanwhile"):
        accounts.set_password_record(
            db,
            account.id,
            old_password=account.password,
            password=new.password,
            sealed_key=new.sealed_key,
        )


def test_damaged_or_swapped_sealed_key_is_not_a_wrong_password(db: Database) -> None:
    _, alice = register(db, "alice")
    _, bob = register(db, "bob")
    flipped = bytearray(alice.sealed_key)
    flipped[-1] ^= 1
    with pytest.raises(SealedKeyError):
        keys.unlock(PASSWORD, Sealed(alice.password, bytes(flipped)), alice.public_key)
    # Alice's record and sealed key presented as Bob's: the public key is bound in.
    with pytest.raises(SealedKeyError):
        keys.unlock(PASSWORD, Sealed(alice.password, alice.sealed_key), bob.public_key)
    with pytest.raises(SealedKeyError):
        keys.unlock(PASSWORD, Sealed("bcrypt$whatever", alice.sealed_key), alice.public_key)
    with pytest.raises(SealedKeyError):
        keys.unlock(
            PASSWORD, Sealed(alice.password, b"\x02" + alice.sealed_key[1:]), alice.public_key
        )


def test_password_rules() -> None:
    with pytest.raises(PasswordError, match="at least 8"):
        keys.check_password("1234567")
    with pytest.raises(PasswordError, match="at most 1024"):
        keys.check_password("x" * 1025)
    # NFC: the same password typed composed or decomposed.
    key = signing.generate_private_key()
    sealed = keys.seal("caf\u00e9 au lait", key, FAST)
    assert keys.unlock("cafe\u0301 au lait", sealed, signing.public_key_bytes(key))
    with pytest.raises(ValueError):
        ScryptParams(n=1000)


def test_parallel_hashes_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    running, peak, lock = 0, 0, threading.Lock()
    real = keys.hashlib.scrypt
    gate = threading.Barrier(keys.MAX_PARALLEL_HASHES, timeout=30)

    def scrypt(*args: object, **kw: object) -> bytes:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        with contextlib.suppress(threading.BrokenBarrierError):
            gate.wait()  # the first MAX_PARALLEL_HASHES meet here, so they overlap
        try:
            return real(*args, **kw)  # type: ignore[arg-type]
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(keys.hashlib, "scrypt", scrypt)
    key = signing.generate_private_key()
    threads = [threading.Thread(target=keys.seal, args=(PASSWORD, key, FAST)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == keys.MAX_PARALLEL_HASHES


def test_export_is_the_key_file_format(db: Database, tmp_path: Path) -> None:
    _, account = register(db, "alice")
    pem = keys.export_key(keys.login(account, PASSWORD, FAST))
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    path = tmp_path / "alice.key"
    path.write_bytes(pem)
    assert signing.public_key_bytes(read_key(path)) == account.public_key


def test_sealed_key_never_stored_in_clear(tmp_path: Path) -> None:
    path = tmp_path / "fora.db"
    db = open_database(path)
    key, account = register(db, "alice", password="hunter2 hunter2")
    db.close()
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("fora.db"))
    assert account.public_key in data  # the search does see what is stored
    assert account.sealed_key in data
    raw = key.private_bytes_raw()
    assert raw not in data
    assert raw.hex().encode() not in data
    assert signing.private_key_to_pem(key) not in data
    assert b"hunter2" not in data
    assert "hunter2".encode("utf-16-le") not in data


# -- accounts table ------------------------------------------------------------------------


def test_duplicate_names_are_refused(db: Database) -> None:
    register(db, "Alice")
    for same in ("alice", "ALICE", " Alice ", "Ａｌｉｃｅ"):  # fullwidth: NFKC
        with pytest.raises(NameTaken):
            register(db, same)
    assert [a.name for a in accounts.list_accounts(db)] == ["Alice"]


@pytest.mark.parametrize(
    ("first", "lookalike"),
    [
        ("paypal", "pаypаl"),  # Cyrillic а
        ("paypal", "PayPaI"),  # capital I for l
        ("olga", "0lga"),  # zero for O
        ("marco", "marc0"),  # zero for o (o and O are one name)
        ("ivan", "іvan"),  # Ukrainian і
        ("Zoë", "Zoe\u0308"),  # decomposed diaeresis: NFKC
        ("mario rossi", "mario   rossi"),  # spaces collapse
        ("stefan", "ſtefan"),  # long s
        ("ali", "all"),  # deliberate: I reads as l, and names ignore case, so i ~ l
    ],
)
def test_confusable_names_are_the_same_name(db: Database, first: str, lookalike: str) -> None:
    assert first != lookalike
    assert accounts.name_key(first) == accounts.name_key(lookalike)
    register(db, first)
    with pytest.raises(NameTaken):
        register(db, lookalike)
    assert accounts.get_account(db, lookalike) is not None


@pytest.mark.parametrize(
    ("a", "b"), [("anna", "anne"), ("René", "Rene"), ("łukasz", "lukasz"), ("maria", "mario")]
)
def test_different_names_stay_different(a: str, b: str) -> None:
    assert accounts.name_key(a) != accounts.name_key(b)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("a", "2 to 40"),
        ("x" * 41, "2 to 40"),
        ("bob<script>", "cannot contain '<'"),
        ("bob\u202ejpg", "cannot contain"),  # right-to-left override
        ("bob\x00", "cannot contain"),
        ("-bob", "starts with a letter"),
        ("bob@example", "cannot contain '@'"),
    ],
)
def test_bad_names_are_refused(db: Database, name: str, why: str) -> None:
    with pytest.raises(AccountError, match=why):
        register(db, name)
    assert accounts.list_accounts(db) == []


def test_names_in_many_languages(db: Database) -> None:
    for name in ("Zoë", "Łukasz", "Jürgen", "Ανδρέας", "Кирил", "Ieva Bērziņa", "O'Brien"):
        register(db, name)
    assert len(accounts.list_accounts(db, "pending")) == 7
    with pytest.raises(AccountError, match="control"):
        register(db, "carla", display="Carla\u200b")


def test_approval_publishes_a_grant_in_the_same_transaction(tmp_path: Path) -> None:
    config, community_key, _ = init_node(tmp_path / "node", name="Bomarzo", country="IT")
    db = open_database(config.db_path)
    try:
        _, alice = register(db, "alice")
        _, mallory = register(db, "mallory")
        community = signing.public_key_bytes(community_key)
        admin = signing.public_key_bytes(community_key)
        with db.atomic():
            grant = publish(
                db,
                community_key,
                community,
                "grant",
                {"member": alice.public_key, "role": "member"},
            )
            approved = accounts.decide(
                db, alice.id, approve=True, decided_by=admin, now=NOW, grant_id=grant.id
            )
        assert approved.status == "approved"
        assert (approved.grant_id, approved.decided_by, approved.decided_at) == (
            grant.id,
            admin,
            NOW,
        )
        assert RoleCache(db.conn).holds(community, alice.public_key, grant.ts + 1, {"member"})
        assert not RoleCache(db.conn).holds(community, alice.public_key, grant.ts + 1, ADMIN_ROLES)
        rejected = accounts.decide(db, mallory.id, approve=False, decided_by=admin, now=NOW)
        assert (rejected.status, rejected.grant_id) == ("rejected", None)
        assert accounts.list_accounts(db, "pending") == []
        with pytest.raises(AccountError, match="approved already"):
            accounts.decide(db, alice.id, approve=False, decided_by=admin, now=NOW)
        with pytest.raises(AccountError, match="needs the id"):
            accounts.decide(db, mallory.id, approve=True, decided_by=admin, now=NOW)
        with pytest.raises(AccountError, match="no account"):
            accounts.decide(db, 999, approve=False, decided_by=admin, now=NOW)
        with pytest.raises(AccountError, match="unknown status"):
            accounts.list_accounts(db, "banned")
    finally:
        db.close()


def test_a_failed_approval_leaves_no_grant(tmp_path: Path) -> None:
    config, community_key, _ = init_node(tmp_path / "node", name="Bomarzo", country="IT")
    db = open_database(config.db_path)
    try:
        _, alice = register(db, "alice")
        accounts.decide(db, alice.id, approve=False, decided_by=b"\1" * 32, now=NOW)
        community = signing.public_key_bytes(community_key)
        before = db.execute("SELECT count(*) FROM messages").fetchone()[0]
        with pytest.raises(AccountError), db.atomic():
            grant = publish(
                db,
                community_key,
                community,
                "grant",
                {"member": alice.public_key, "role": "member"},
            )
            accounts.decide(
                db, alice.id, approve=True, decided_by=community, now=NOW, grant_id=grant.id
            )
        assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == before
    finally:
        db.close()


def test_status_is_checked_by_the_database(db: Database) -> None:
    register(db, "alice")
    import sqlite3

    with pytest.raises(sqlite3.IntegrityError):
        db.execute("UPDATE accounts SET status = 'banned'")


# -- throttling ----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


POLICY = Policy(free=2, base=1.0, factor=2.0, cap=10.0, forget_after=100.0)


def test_delays_grow_exponentially_up_to_the_cap() -> None:
    clock = Clock()
    throttle = LoginThrottle(account_policy=POLICY, address_policy=POLICY, clock=clock)
    waits = []
    for _ in range(8):
        throttle.failed("alice", "192.0.2.1")
        waits.append(throttle.wait("alice", "192.0.2.1"))
    assert waits == [0.0, 0.0, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    clock.now += 4.0
    assert throttle.wait("alice", "192.0.2.1") == 6.0
    clock.now += 6.0
    assert throttle.wait("alice", "192.0.2.1") == 0.0


def test_per_address_and_per_account() -> None:
    clock = Clock()
    throttle = LoginThrottle(account_policy=POLICY, address_policy=POLICY, clock=clock)
    # One address guessing many names: the address slows down, the names do not.
    for i in range(4):
        throttle.failed(f"user{i}", "192.0.2.1")
    assert throttle.wait("user9", "192.0.2.1") == 2.0
    assert throttle.wait("user0", "198.51.100.7") == 0.0
    # Many addresses guessing one name: the name slows down everywhere.
    for i in range(4):
        throttle.failed("carol", f"203.0.113.{i}")
    assert throttle.wait("carol", "198.51.100.7") == 2.0
    # A success clears the account, not the address.
    throttle.succeeded("carol", "203.0.113.0")
    assert throttle.wait("carol", "198.51.100.7") == 0.0
    throttle.succeeded("user0", "192.0.2.1")
    assert throttle.wait("user0", "192.0.2.1") == 2.0


def test_ipv6_counts_per_64() -> None:
    clock = Clock()
    throttle = LoginThrottle(account_policy=POLICY, address_policy=POLICY, clock=clock)
    for i in range(4):
        throttle.failed(f"u{i}", f"2001:db8:1:2::{i + 1}")
    assert throttle.wait("x", "2001:db8:1:2:ffff::9") == 2.0
    assert throttle.wait("x", "2001:db8:1:3::1") == 0.0
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_key("2001:db8::1") == "2001:db8::/64"


def test_failures_are_forgotten() -> None:
    clock = Clock()
    throttle = LoginThrottle(account_policy=POLICY, address_policy=POLICY, clock=clock)
    for _ in range(5):
        throttle.failed("alice", "192.0.2.1")
    clock.now += 100.0
    assert throttle.wait("alice", "192.0.2.1") == 0.0
    throttle.failed("alice", "192.0.2.1")
    assert throttle.wait("alice", "192.0.2.1") == 0.0  # counting starts over
    assert len(throttle) == 2


def test_memory_is_bounded() -> None:
    clock = Clock()
    throttle = LoginThrottle(
        account_policy=POLICY, address_policy=POLICY, max_entries=100, clock=clock
    )
    for _ in range(5):
        throttle.failed("victim", "192.0.2.1")
    for i in range(10_000):
        clock.now += 0.001
        throttle.failed(f"name{i}", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    assert len(throttle) == 200
    assert throttle.wait("name9999", "10.0.39.15") == 0.0  # 1 failure each: free
    assert throttle.wait("victim", "192.0.2.2") == 0.0  # evicted, oldest first
    with pytest.raises(ValueError):
        LoginThrottle(max_entries=0)
