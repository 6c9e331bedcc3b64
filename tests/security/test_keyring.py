"""The key provider interface and the local keyring file."""
import json
import stat

import pytest

from referral.security.keyring import KeyringError, KeyProvider, LocalKeyring, SealIntegrityError

CTX = {"purpose": "case-data-key", "case": "case-1"}


def test_keyring_file_is_created_private_with_a_256_bit_kek(tmp_path):
    path = tmp_path / "ring" / "keyring.json"
    ring = LocalKeyring(path)
    assert isinstance(ring, KeyProvider)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert [k["version"] for k in data["keks"]] == [1] and data["keks"][0]["state"] == "active"
    assert len(ring.active.key) == 32 and len(ring.blind_index_key()) == 32
    assert ring.blind_index_key() != ring.active.key
    assert LocalKeyring(path).active.key == ring.active.key  # reloads, does not regenerate


def test_data_key_unwraps_only_in_its_own_context(tmp_path):
    ring = LocalKeyring(tmp_path / "k.json")
    data_key, wrapped = ring.generate_data_key(CTX)
    assert len(data_key) == 32 and data_key not in wrapped
    assert ring.unwrap(wrapped, CTX) == data_key
    with pytest.raises(SealIntegrityError):
        ring.unwrap(wrapped, {**CTX, "case": "case-2"})
    tampered = bytearray(wrapped)
    tampered[-1] ^= 1
    with pytest.raises(SealIntegrityError):
        ring.unwrap(bytes(tampered), CTX)
    with pytest.raises(SealIntegrityError):
        ring.unwrap(wrapped[:10], CTX)


def test_rotation_adds_a_kek_and_keeps_the_old_one_for_decryption(tmp_path):
    path = tmp_path / "k.json"
    ring = LocalKeyring(path)
    data_key, old_wrapped = ring.generate_data_key(CTX)
    new = ring.add_kek()
    assert new.version == 2 and ring.active.version == 2
    assert ring.kek(1).state == "decrypt_only"
    assert ring.unwrap(old_wrapped, CTX) == data_key
    rewrapped = ring.rewrap(old_wrapped, CTX)
    assert ring.wrapped_version(rewrapped) == 2 and ring.unwrap(rewrapped, CTX) == data_key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    reloaded = LocalKeyring(path)
    assert [(k.version, k.state) for k in reloaded.versions] == [(1, "decrypt_only"), (2, "active")]
    reloaded.retire(1)
    with pytest.raises(KeyringError, match="no key version 1"):
        LocalKeyring(path).unwrap(old_wrapped, CTX)
    with pytest.raises(KeyringError, match="active key cannot be retired"):
        reloaded.retire(2)


def test_missing_or_broken_keyring_is_a_clear_error(tmp_path):
    with pytest.raises(KeyringError, match="not found"):
        LocalKeyring(tmp_path / "absent.json", create=False)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(KeyringError, match="unreadable"):
        LocalKeyring(bad)
    short = tmp_path / "short.json"
    short.write_text(json.dumps({"format": 1, "blind_index_key": "AAAA",
                                 "keks": [{"version": 1, "key": "AAAA", "created_at": "x", "state": "active"}]}))
    with pytest.raises(KeyringError, match="not 256 bits"):
        LocalKeyring(short)


def test_production_never_creates_a_keyring_implicitly(app, tmp_path, monkeypatch):
    from referral.security.keyring import keyring_for

    class FakeApp:
        extensions: dict = {}
        config = {"KEYRING_PATH": str(tmp_path / "prod.json"), "ENV_NAME": "production"}

    with pytest.raises(KeyringError):
        keyring_for(FakeApp())
    assert not (tmp_path / "prod.json").exists()


def test_another_process_sees_a_rotation_without_restarting(tmp_path):
    """Two app servers share a keyring file; one rotates, the other must follow at once."""
    import os
    import time

    path = tmp_path / "shared.json"
    server_a, server_b = LocalKeyring(path), LocalKeyring(path)
    time.sleep(0.01)
    server_a.add_kek()
    os.utime(path)  # make sure the change is visible even on coarse file-time filesystems
    data_key, wrapped = server_a.generate_data_key(CTX)
    assert server_a.wrapped_version(wrapped) == 2
    assert server_b.unwrap(wrapped, CTX) == data_key          # knows version 2 now
    _, fresh = server_b.generate_data_key(CTX)
    assert server_b.wrapped_version(fresh) == 2                # and seals with it


def test_retention_keys_belong_to_one_month_survive_rotation_and_are_destroyed_for_good(tmp_path):
    path = tmp_path / "k.json"
    ring = LocalKeyring(path)
    data_key, wrapped = ring.generate_data_key(CTX)
    month = ring.retention_kek("2031-05")
    assert month.state == "retention" and month.period == "2031-05" and ring.retention_kek("2031-05") == month
    assert ring.active.version == 1  # a month key is never the active key
    moved = ring.wrap_for_retention(wrapped, CTX, "2031-05")
    assert ring.wrapped_version(moved) == month.version and ring.unwrap(moved, CTX) == data_key
    assert ring.wrap_for_retention(moved, CTX, "2031-05") == moved
    ring.add_kek()
    assert LocalKeyring(path).kek(month.version).state == "retention"  # rotation leaves it alone
    with pytest.raises(KeyringError, match="retention apply"):
        ring.retire(month.version)
    with pytest.raises(KeyringError, match="not a retention key"):
        ring.destroy_retention_kek(1)
    assert ring.destroy_retention_kek(month.version) == "2031-05"
    reloaded = LocalKeyring(path)
    assert reloaded.destroyed_versions == {month.version: "2031-05"} and month.version not in reloaded.retention_versions
    assert "2031-05" not in [k.period for k in reloaded.versions]
    with pytest.raises(KeyringError, match=f"no key version {month.version}"):
        reloaded.unwrap(moved, CTX)
    with pytest.raises(ValueError):
        ring.retention_kek("2031-13")


def test_two_processes_updating_the_keyring_do_not_undo_each_other(tmp_path):
    path = tmp_path / "k.json"
    first, second = LocalKeyring(path), LocalKeyring(path)
    first.add_kek()               # second still holds the file as it was before
    second.retention_kek("2031-05")
    final = LocalKeyring(path)
    assert [(k.version, k.state) for k in final.versions] == [(1, "decrypt_only"), (2, "active"), (3, "retention")]


def test_a_keyring_created_by_many_threads_at_once_is_one_and_whole(tmp_path):
    """The first requests of a fresh development server arrive together: each finds no keyring and makes
    one. Exactly one is published, and no thread reads it half-written."""
    import threading

    from referral.security.keyring import LocalKeyring

    for attempt in range(5):
        path = tmp_path / f"ring-{attempt}" / "keyring.json"
        barrier, found, errors = threading.Barrier(12), [], []

        def load() -> None:
            barrier.wait()
            try:
                found.append(LocalKeyring(path).blind_index_key())
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(repr(exc))

        threads = [threading.Thread(target=load) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert errors == [] and len(found) == 12 and len(set(found)) == 1
        assert sorted(p.name for p in path.parent.iterdir()) == ["keyring.json"]  # no temporary file left
        assert path.stat().st_mode & 0o777 == 0o600
