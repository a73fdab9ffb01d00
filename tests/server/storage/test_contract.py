"""The Storage contract, run against every backend (see conftest.py)."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Callable, Sequence

import pytest

from server.storage import NewImage, Storage, StorageError, StoredImage
from tests.server.storage.conftest import HeldDigests, SettableClock

T0 = dt.datetime(2030, 5, 17, 12, 0, 0, tzinfo=dt.UTC)
CAP = 1000


def new_image(
    number: int,
    owner: str = "alice",
    data: bytes | None = None,
    expires_at: dt.datetime | None = None,
) -> NewImage:
    return NewImage(
        id=f"image_{number:024d}",
        owner=owner,
        name=f"picture {number}.png",
        format="png",
        width=10 + number,
        height=20 + number,
        data=data if data is not None else f"bytes of image {number}".encode(),
        expires_at=expires_at,
    )


def ids(images: Sequence[StoredImage]) -> list[str]:
    return [image.id for image in images]


def add_all(storage: Storage, clock: SettableClock, count: int) -> list[str]:
    """`count` images one millisecond apart; their ids, oldest first."""
    made = []
    for number in range(count):
        clock.fixed = T0 + dt.timedelta(milliseconds=number)
        made.append(storage.add_image(new_image(number)).id)
    clock.fixed = None
    return made


# --- images -------------------------------------------------------------------------------


def test_an_added_image_reads_back_with_its_bytes(storage: Storage) -> None:
    before = dt.datetime.now(dt.UTC) - dt.timedelta(milliseconds=1)
    expires = dt.datetime(2031, 1, 2, 3, 4, 5, 678_901, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    image = new_image(1, expires_at=expires)
    stored = storage.add_image(image)
    assert stored.id == image.id
    assert (stored.owner, stored.name, stored.format) == ("alice", "picture 1.png", "png")
    assert (stored.width, stored.height) == (11, 21)
    assert stored.size == len(image.data)
    assert stored.digest == hashlib.sha256(image.data).hexdigest()
    assert stored.public_token is None
    # Times: UTC, whole milliseconds, set by the storage.
    assert stored.created_at.utcoffset() == dt.timedelta(0)
    assert stored.created_at.microsecond % 1000 == 0
    assert before <= stored.created_at <= dt.datetime.now(dt.UTC)
    assert stored.expires_at == dt.datetime(2031, 1, 2, 1, 4, 5, 678_000, tzinfo=dt.UTC)
    assert stored.expires_at is not None and stored.expires_at.utcoffset() == dt.timedelta(0)
    assert storage.image(image.id, "alice") == stored
    assert storage.image_data(stored) == image.data


def test_an_unknown_image_is_absent(storage: Storage) -> None:
    assert storage.image("image_nope", "alice") is None


def test_a_duplicate_id_is_refused_and_the_first_image_kept(storage: Storage) -> None:
    first = storage.add_image(new_image(1, data=b"first"))
    with pytest.raises(ValueError):
        storage.add_image(new_image(1, data=b"second"))
    assert storage.image(first.id, "alice") == first
    assert storage.image_data(first) == b"first"
    page = storage.page("alice", 10, None)
    assert page is not None and ids(page.images) == [first.id]


def test_a_naive_expiry_time_is_refused(storage: Storage) -> None:
    with pytest.raises(ValueError):
        storage.add_image(new_image(1, expires_at=dt.datetime(2031, 1, 1)))
    assert storage.image(new_image(1).id, "alice") is None


def test_images_are_visible_to_their_owner_only(storage: Storage) -> None:
    mine = storage.add_image(new_image(1, owner="alice"))
    theirs = storage.add_image(new_image(2, owner="bob"))
    assert storage.image(mine.id, "bob") is None
    assert storage.image(theirs.id, "alice") is None
    alice, bob = storage.page("alice", 10, None), storage.page("bob", 10, None)
    assert alice is not None and ids(alice.images) == [mine.id]
    assert bob is not None and ids(bob.images) == [theirs.id]
    assert storage.page("bob", 10, mine.id) is None
    assert storage.delete_image(mine.id, "bob") is False
    assert storage.set_public_token(mine.id, "bob", "token-x") is None
    assert storage.published("token-x") is None
    assert storage.image(mine.id, "alice") == mine


def test_an_owner_without_images_gets_an_empty_page(storage: Storage) -> None:
    page = storage.page("nobody", 5, None)
    assert page is not None
    assert (list(page.images), page.next_id, page.previous_id) == ([], None, None)


def test_pages_run_newest_first_with_links_both_ways(
    storage: Storage, clock: SettableClock
) -> None:
    made = add_all(storage, clock, 7)  # made[6] is the newest
    first = storage.page("alice", 3, None)
    assert first is not None
    assert ids(first.images) == [made[6], made[5], made[4]]
    assert (first.next_id, first.previous_id) == (made[3], None)
    second = storage.page("alice", 3, first.next_id)
    assert second is not None
    assert ids(second.images) == [made[3], made[2], made[1]]
    assert (second.next_id, second.previous_id) == (made[0], made[6])
    last = storage.page("alice", 3, second.next_id)
    assert last is not None
    assert ids(last.images) == [made[0]]
    assert (last.next_id, last.previous_id) == (None, made[3])
    # Starting the newest image explicitly is the first page.
    assert storage.page("alice", 3, made[6]) == first


def test_a_page_started_mid_list_links_back_to_a_full_page(
    storage: Storage, clock: SettableClock
) -> None:
    made = add_all(storage, clock, 7)
    page = storage.page("alice", 2, made[3])
    assert page is not None
    assert ids(page.images) == [made[3], made[2]]
    assert (page.next_id, page.previous_id) == (made[1], made[5])
    # Fewer than `take` newer images: the previous page is the first one.
    near_top = storage.page("alice", 3, made[5])
    assert near_top is not None and near_top.previous_id == made[6]


def test_walking_next_then_previous_visits_every_image(
    storage: Storage, clock: SettableClock
) -> None:
    made = add_all(storage, clock, 11)
    forward: list[str] = []
    starts: list[str | None] = []
    start: str | None = None
    while True:
        page = storage.page("alice", 4, start)
        assert page is not None
        starts.append(start)
        forward += ids(page.images)
        if page.next_id is None:
            break
        start = page.next_id
    assert forward == made[::-1]
    back: list[str | None] = []
    while start is not None:
        page = storage.page("alice", 4, start)
        assert page is not None
        start = page.previous_id
        back.append(start)
    assert back == [made[6], made[10], None]


def test_ties_in_created_at_go_by_insertion_order(storage: Storage, clock: SettableClock) -> None:
    clock.fixed = T0
    made = [storage.add_image(new_image(number)) for number in range(5)]
    assert len({image.created_at for image in made}) == 1
    first = storage.page("alice", 2, None)
    assert first is not None
    assert ids(first.images) == [made[4].id, made[3].id]
    middle = storage.page("alice", 2, first.next_id)
    assert middle is not None
    assert ids(middle.images) == [made[2].id, made[1].id]
    assert (middle.next_id, middle.previous_id) == (made[0].id, made[4].id)


def test_created_at_orders_before_insertion(storage: Storage, clock: SettableClock) -> None:
    clock.fixed = T0
    later = storage.add_image(new_image(1))
    clock.fixed = T0 - dt.timedelta(seconds=1)
    earlier = storage.add_image(new_image(2))
    page = storage.page("alice", 5, None)
    assert page is not None and ids(page.images) == [later.id, earlier.id]


def test_a_page_takes_at_least_one(storage: Storage) -> None:
    with pytest.raises(ValueError):
        storage.page("alice", 0, None)


def test_delete_removes_the_image(storage: Storage, held_digests: HeldDigests) -> None:
    kept = storage.add_image(new_image(1))
    gone = storage.add_image(new_image(2))
    assert storage.delete_image(gone.id, "alice") is True
    assert storage.image(gone.id, "alice") is None
    page = storage.page("alice", 10, None)
    assert page is not None and ids(page.images) == [kept.id]
    assert storage.page("alice", 10, gone.id) is None
    assert storage.delete_image(gone.id, "alice") is False
    assert held_digests() == {kept.digest}


def test_identical_bytes_are_freed_only_when_unreferenced(
    storage: Storage, held_digests: HeldDigests
) -> None:
    one = storage.add_image(new_image(1, data=b"same bytes"))
    two = storage.add_image(new_image(2, data=b"same bytes"))
    assert one.digest == two.digest
    assert held_digests() == {one.digest}
    assert storage.delete_image(one.id, "alice")
    assert storage.image_data(two) == b"same bytes"
    assert held_digests() == {one.digest}
    assert storage.delete_image(two.id, "alice")
    assert held_digests() == set()


def test_publish_and_unpublish(storage: Storage) -> None:
    image = storage.add_image(new_image(1))
    assert storage.set_public_token("image_none", "alice", "token-a") is None
    published = storage.set_public_token(image.id, "alice", "token-a")
    assert published is not None and published.public_token == "token-a"
    assert storage.image(image.id, "alice") == published
    assert storage.published("token-a") == published  # no owner needed
    assert storage.published("token-b") is None
    unpublished = storage.set_public_token(image.id, "alice", None)
    assert unpublished is not None and unpublished.public_token is None
    assert storage.published("token-a") is None


def test_a_token_publishes_one_image_only(storage: Storage) -> None:
    one = storage.add_image(new_image(1))
    two = storage.add_image(new_image(2))
    storage.set_public_token(one.id, "alice", "token-a")
    with pytest.raises(ValueError):
        storage.set_public_token(two.id, "alice", "token-a")
    published = storage.published("token-a")
    assert published is not None and published.id == one.id


def test_deleting_an_image_ends_its_public_url(storage: Storage) -> None:
    image = storage.add_image(new_image(1))
    storage.set_public_token(image.id, "alice", "token-a")
    assert storage.delete_image(image.id, "alice")
    assert storage.published("token-a") is None


def test_purge_deletes_expired_images_only(storage: Storage, held_digests: HeldDigests) -> None:
    now = T0
    past = storage.add_image(new_image(1, expires_at=now - dt.timedelta(seconds=1)))
    exactly = storage.add_image(new_image(2, expires_at=now))
    future = storage.add_image(new_image(3, expires_at=now + dt.timedelta(milliseconds=1)))
    forever = storage.add_image(new_image(4, owner="bob"))
    assert storage.purge_images(now) == 2
    assert storage.image(past.id, "alice") is None
    assert storage.image(exactly.id, "alice") is None
    assert storage.image(future.id, "alice") == future
    assert storage.image(forever.id, "bob") == forever
    assert held_digests() == {future.digest, forever.digest}
    assert storage.purge_images(now) == 0


# --- usage --------------------------------------------------------------------------------


def test_usage_adds_up_per_owner_and_day(storage: Storage) -> None:
    day1, day2, day3 = dt.date(2030, 1, 1), dt.date(2030, 1, 2), dt.date(2030, 2, 1)
    assert storage.usage("alice") == {}
    storage.count_usage("alice", day3, 1)
    storage.count_usage("alice", day1, 2)
    storage.count_usage("alice", day1, 3)
    storage.count_usage("bob", day2, 7)
    usage = storage.usage("alice")
    assert usage == {day1: 5, day3: 1}
    assert list(usage) == [day1, day3]
    assert storage.usage("bob") == {day2: 7}


def test_concurrent_usage_counts_are_never_lost(storage: Storage) -> None:
    day = dt.date(2030, 1, 1)

    def count() -> None:
        for _ in range(5):
            storage.count_usage("alice", day, 1)

    assert run_at_once([count] * 8) == []
    assert storage.usage("alice") == {day: 40}


# --- kept results -------------------------------------------------------------------------


def test_a_kept_result_reads_back_by_token_and_by_id(storage: Storage) -> None:
    details = {"status": "success", "meta": {"w": 3}, "list": [1, 2]}
    kept = storage.put_result(b"png bytes", "image/png", "alice", details, 2000.0, CAP)
    assert 1 <= kept.id < 2**53
    assert len(kept.token) == 32
    assert (kept.data, kept.media_type, kept.owner) == (b"png bytes", "image/png", "alice")
    assert (kept.expires_at, kept.details) == (2000.0, details)
    assert storage.result_by_token(kept.token, 1000.0) == kept
    assert storage.result_by_id(kept.id, "alice", 1000.0) == kept
    assert storage.result_bytes() == len(b"png bytes")


def test_results_get_fresh_ids_and_tokens(storage: Storage) -> None:
    kept = [storage.put_result(b"x", "image/png", "alice", {}, 2000.0, CAP) for _ in range(20)]
    assert len({result.id for result in kept}) == 20
    assert len({result.token for result in kept}) == 20


def test_a_result_by_id_needs_its_owner(storage: Storage) -> None:
    kept = storage.put_result(b"data", "image/png", "alice", {}, 2000.0, CAP)
    assert storage.result_by_id(kept.id, "bob", 1000.0) is None
    assert storage.result_by_id(kept.id + 1, "alice", 1000.0) is None
    assert storage.result_by_token("not-a-token", 1000.0) is None


def test_an_expired_result_is_never_returned(storage: Storage) -> None:
    kept = storage.put_result(b"data", "image/png", "alice", {}, 2000.0, CAP)
    assert storage.result_by_token(kept.token, 1999.999) == kept
    assert storage.result_by_token(kept.token, 2000.0) is None
    assert storage.result_by_id(kept.id, "alice", 2000.0) is None


def test_purge_results_drops_expired_ones_and_their_bytes(storage: Storage) -> None:
    old = storage.put_result(b"a" * 10, "image/png", "alice", {}, 1500.0, CAP)
    edge = storage.put_result(b"b" * 20, "image/png", "alice", {}, 2000.0, CAP)
    new = storage.put_result(b"c" * 40, "image/png", "alice", {}, 2500.0, CAP)
    assert storage.result_bytes() == 70
    assert storage.purge_results(2000.0) == 2
    assert storage.result_bytes() == 40
    assert storage.result_by_token(old.token, 0.0) is None
    assert storage.result_by_token(edge.token, 0.0) is None
    assert storage.result_by_token(new.token, 0.0) == new
    assert storage.purge_results(2000.0) == 0


def test_the_byte_cap_drops_the_results_that_expire_soonest(storage: Storage) -> None:
    def put(size: int, expires_at: float) -> str:
        return storage.put_result(b"r" * size, "image/png", "alice", {}, expires_at, 100).token

    late = put(30, 3000.0)
    soon = put(30, 1000.0)
    middle = put(30, 2000.0)
    tie_first = put(5, 2500.0)
    tie_second = put(5, 2500.0)
    assert storage.result_bytes() == 100
    newest = put(10, 4000.0)  # 110 > 100: the soonest to expire goes
    assert storage.result_bytes() == 80
    assert storage.result_by_token(soon, 0.0) is None
    big = put(35, 4000.0)  # 115: middle (2000) goes, then 85 fits
    assert storage.result_by_token(middle, 0.0) is None
    assert storage.result_bytes() == 85
    put(20, 4000.0)  # 105: tie_first (2500, stored first) goes, 100 fits
    assert storage.result_by_token(tie_first, 0.0) is None
    kept = [late, tie_second, newest, big]
    assert all(storage.result_by_token(token, 0.0) is not None for token in kept)
    assert storage.result_bytes() == 100


def test_a_result_larger_than_the_cap_is_refused(storage: Storage) -> None:
    kept = storage.put_result(b"k" * 10, "image/png", "alice", {}, 2000.0, 100)
    with pytest.raises(ValueError):
        storage.put_result(b"x" * 101, "image/png", "alice", {}, 2000.0, 100)
    assert storage.result_by_token(kept.token, 0.0) == kept
    assert storage.result_bytes() == 10
    storage.put_result(b"x" * 100, "image/png", "alice", {}, 2000.0, 100)  # exactly fits
    assert storage.result_bytes() == 100


def test_results_and_images_with_identical_bytes_stay_apart(storage: Storage) -> None:
    image = storage.add_image(new_image(1, data=b"shared"))
    kept = storage.put_result(b"shared", "image/png", "alice", {}, 2000.0, CAP)
    assert storage.purge_results(2000.0) == 1
    assert storage.image_data(image) == b"shared"
    again = storage.put_result(b"shared", "image/png", "alice", {}, 3000.0, CAP)
    assert storage.delete_image(image.id, "alice")
    assert storage.result_by_token(again.token, 0.0) == again
    assert kept.token != again.token


# --- failures and concurrency -------------------------------------------------------------


def test_a_closed_storage_raises_storage_error(open_backend: Callable[[], Storage]) -> None:
    storage = open_backend()
    storage.close()
    with pytest.raises(StorageError):
        storage.add_image(new_image(1))
    with pytest.raises(StorageError):
        storage.image("image_x", "alice")


def test_reopening_keeps_everything(open_backend: Callable[[], Storage]) -> None:
    storage = open_backend()
    image = storage.add_image(new_image(1, expires_at=T0))
    published = storage.set_public_token(image.id, "alice", "token-a")
    storage.count_usage("alice", dt.date(2030, 1, 1), 3)
    kept = storage.put_result(b"result", "image/png", "alice", {"a": 1}, 2000.0, CAP)
    storage.close()
    again = open_backend()
    assert again.image(image.id, "alice") == published
    assert again.published("token-a") == published
    assert again.image_data(image) == image_data_of(1)
    assert again.usage("alice") == {dt.date(2030, 1, 1): 3}
    assert again.result_by_id(kept.id, "alice", 1000.0) == kept
    assert again.result_bytes() == len(b"result")


def image_data_of(number: int) -> bytes:
    return new_image(number).data


def run_at_once(tasks: list[Callable[[], None]]) -> list[BaseException]:
    """Run every task in its own thread, released together; the errors they raised."""
    barrier = threading.Barrier(len(tasks))
    errors: list[BaseException] = []

    def run(task: Callable[[], None]) -> None:
        try:
            barrier.wait(timeout=30)
            task()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(task,)) for task in tasks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not any(thread.is_alive() for thread in threads), "a storage call hung"
    return errors


def adder(storage: Storage, image: NewImage) -> Callable[[], None]:
    def add() -> None:
        storage.add_image(image)

    return add


def deleter(storage: Storage, image: StoredImage) -> Callable[[], None]:
    def delete() -> None:
        assert storage.delete_image(image.id, "alice")

    return delete


def test_fifty_threads_adding_at_once_all_land(storage: Storage) -> None:
    # Half share their bytes: they race on one stored copy too.
    images = [new_image(number, data=image_data_of(number % 25)) for number in range(50)]
    assert run_at_once([adder(storage, image) for image in images]) == []
    page = storage.page("alice", 100, None)
    assert page is not None
    assert sorted(ids(page.images)) == sorted(image.id for image in images)
    for stored in page.images:
        assert storage.image_data(stored) == image_data_of(int(stored.id[6:]) % 25)


def test_adding_and_deleting_identical_bytes_at_once_keeps_the_new_bytes(
    storage: Storage,
) -> None:
    rounds, pairs = 6, 4
    for round_ in range(rounds):
        tasks: list[Callable[[], None]] = []
        new_ones: list[NewImage] = []
        for pair in range(pairs):
            data = f"round {round_} pair {pair}".encode()
            old = storage.add_image(new_image(1000 + round_ * 10 + pair, data=data))
            new = new_image(2000 + round_ * 10 + pair, data=data)
            new_ones.append(new)
            tasks += [deleter(storage, old), adder(storage, new)]
        assert run_at_once(tasks) == []
        for new in new_ones:
            stored = storage.image(new.id, "alice")
            assert stored is not None
            assert storage.image_data(stored) == new.data


def test_concurrent_puts_never_exceed_the_byte_cap(storage: Storage) -> None:
    def put_some() -> None:
        for _ in range(10):
            storage.put_result(b"r" * 10, "image/png", "alice", {}, 2000.0, 50)

    assert run_at_once([put_some] * 8) == []
    assert storage.result_bytes() == 50
