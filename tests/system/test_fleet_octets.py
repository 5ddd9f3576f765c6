"""The fleet harness's address reservation (tests/lib/fleet.py): fleets made at the same
time get distinct 10.X.0.0/16 networks, a reservation whose fleet root is gone is taken
over, and `down` gives the octet back. No hosts are made: the reservations live in a temp
dir instead of /run/cfs-fleet-octets."""
import os
import threading

import pytest

from tests.lib import fleet


@pytest.fixture
def octets_dir(tmp_path):
    return str(tmp_path / "octets")


def make_roots(tmp_path, count):
    roots = []
    for index in range(count):
        root = tmp_path / ("fleet%d" % index)
        root.mkdir()
        roots.append(str(root))
    return roots


def test_fleets_picking_at_once_get_distinct_octets(tmp_path, octets_dir):
    roots = make_roots(tmp_path, 8)
    picked = {}
    barrier = threading.Barrier(len(roots))

    def pick(root):
        barrier.wait()  # all pick at once
        picked[root] = fleet.reserve_octet(root, octets_dir=octets_dir)

    threads = [threading.Thread(target=pick, args=(root,)) for root in roots]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(picked.values())) == len(roots), picked
    for root, octet in picked.items():
        assert fleet.reservation_holder(octet, octets_dir) == root


def test_a_second_pick_does_not_take_a_reserved_octet(tmp_path, octets_dir):
    first, second = make_roots(tmp_path, 2)
    octet = fleet.reserve_octet(first, octets_dir=octets_dir)
    assert fleet.reserve_octet(second, octets_dir=octets_dir) != octet
    # the holder asking again (a second `up` on the same root) keeps its own
    assert fleet.reserve_octet(first, octets_dir=octets_dir) == octet
    with pytest.raises(fleet.FleetError, match="reserved by the fleet at %s" % first):
        fleet.reserve_octet(second, octet=octet, octets_dir=octets_dir)


def test_a_stale_reservation_is_taken_over(tmp_path, octets_dir):
    gone, alive = make_roots(tmp_path, 2)
    octet = fleet.reserve_octet(gone, octets_dir=octets_dir)
    os.rmdir(gone)  # its fleet went away without `down`
    assert fleet.reservation_holder(octet, octets_dir) is None
    assert fleet.reserve_octet(alive, octets_dir=octets_dir) == octet
    assert fleet.reservation_holder(octet, octets_dir) == alive


def test_release_gives_back_only_the_fleets_own(tmp_path, octets_dir):
    first, second = make_roots(tmp_path, 2)
    mine = fleet.reserve_octet(first, octets_dir=octets_dir)
    theirs = fleet.reserve_octet(second, octets_dir=octets_dir)
    fleet.release_octet(first, octets_dir=octets_dir)
    assert not os.path.exists(os.path.join(octets_dir, str(mine)))
    assert fleet.reservation_holder(theirs, octets_dir) == second


def test_a_reservation_appears_whole_and_one_without_its_link_is_stale(tmp_path, octets_dir, monkeypatch):
    root, other = make_roots(tmp_path, 2)
    seen = []
    real_rename = os.rename

    def watch(src, dest):  # what a reader would see just before the reservation appears
        seen.append(os.readlink(os.path.join(src, "root")))
        real_rename(src, dest)
    monkeypatch.setattr(fleet.os, "rename", watch)
    octet = fleet.reserve_octet(root, octets_dir=octets_dir)
    assert seen == [root]
    assert sorted(os.listdir(octets_dir)) == [str(octet)]  # no claim dir left behind
    monkeypatch.undo()
    # a dir without its link (an older harness killed between mkdir and symlink) is stale
    os.mkdir(os.path.join(octets_dir, str(octet + 1)))
    assert fleet.reservation_holder(octet + 1, octets_dir) is None
    assert fleet.reserve_octet(other, octet=octet + 1, octets_dir=octets_dir) == octet + 1
