"""Reference media, image-hash matches and HMA hash lists, on the services' in-memory workspace."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from pathlib import Path

import pytest
from PIL import Image, ImageFilter
from sqlalchemy import select

from mimamori.core.config import load_settings
from mimamori.core.errors import ConsentMissing, InvalidInput, PhotoRejected
from mimamori.media.local_features import from_bytes
from mimamori.media.pdq import pdq_hash
from mimamori.services import cases, references, users
from mimamori.services.audit import Actor
from mimamori.services.consent import record_consent
from mimamori.services.hash_lists import ListedHash, format_hash_list, parse_hash_list
from mimamori.services.image_matches import HashedMedia, MediaWatchlist, thumbnail_key
from mimamori.services.match_signals import summary
from mimamori.stores.cases import AuditEvent, Case, Match, utcnow
from mimamori.stores.references import ReferenceMedia
from tests.support.memory import MemoryProducer
from tests.support.workspace import IndexedFace as StoredIndexedFace
from tests.support.workspace import MemoryWorkspace, consent_record, unit

ADMIN = Actor("ada", "admin")


@pytest.fixture(scope="module")
def picture(testdata: Path) -> Image.Image:
    return Image.open(testdata / "faces" / "multiface.jpg").convert("RGB")


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture
def work(tmp_path) -> MemoryWorkspace:
    return MemoryWorkspace(load_settings("local"), tmp_path / "cases.sqlite3", {})


def open_case(work: MemoryWorkspace, case_id: str, scope: list[str] | None = None) -> None:
    from mimamori.services.consent import ConsentRecord

    cases.create_case(work, ADMIN, case_id, "Client C.")
    record_consent(work, ADMIN, case_id, ConsentRecord.model_validate(
        consent_record(**({"scope": scope} if scope else {}))))


def watchlist(work: MemoryWorkspace) -> MediaWatchlist:
    return MediaWatchlist(work.settings, "memory/v1", sessions=work.sessions, enrolled=work.enrolled,
                          producer=MemoryProducer(), references=work.memory_references, objects=work.memory_objects)


def scraped(image: Image.Image, sha: str) -> HashedMedia:
    return HashedMedia(sha, [(0, pdq_hash(image))], f"m-{sha[:4]}", f"https://host.example/{sha[:4]}.jpg", "web")


def test_a_reference_keeps_its_hashes_and_a_blurred_thumbnail_not_the_original(work, picture):
    open_case(work, "c1")
    result = references.add_references(work, ADMIN, "c1", [("leak.jpg", jpeg(picture), "image/jpeg")], "leak 1")
    [view] = result.references
    assert (view.kind, view.frames, view.hashes, view.original_kept, view.label) == ("image", 1, 8, False, "leak 1")
    assert sorted(h.variant for h in work.memory_references.of_case("c1")) == sorted(
        ["original", "rotate90", "rotate180", "rotate270", "flip_x", "flip_y", "flip_plus1", "flip_minus1"])
    bucket = work.settings.minio.buckets.references.name
    [key] = work.memory_objects.keys(bucket)  # no keypoints either while the crop signal is off
    assert key == f"cases/c1/references/{view.sha256}/thumbnail.jpg"
    thumbnail = Image.open(io.BytesIO(work.memory_objects._get(bucket, key)))
    assert max(thumbnail.size) == work.settings.matching.reference_thumbnail_px
    # blurred: far less detail than the same-size sharp picture
    sharp = picture.copy()
    sharp.thumbnail(thumbnail.size)
    edges = [sum(i.convert("L").filter(ImageFilter.FIND_EDGES).getdata()) for i in (thumbnail, sharp)]
    assert edges[0] < edges[1] / 2
    again = references.add_references(work, ADMIN, "c1", [("leak.jpg", jpeg(picture), "image/jpeg")])
    assert again.references[0].id == view.id and work.memory_references.count("c1") == 8  # idempotent


def test_originals_are_kept_only_when_the_organisation_says_so(work, picture):
    open_case(work, "c1")
    users.set_organisation_settings(work, ADMIN, keep_reference_originals=True)
    [view] = references.add_references(work, ADMIN, "c1", [("leak.jpg", jpeg(picture), "image/jpeg")]).references
    assert view.original_kept
    assert f"cases/c1/references/{view.sha256}/original" in work.memory_objects.keys(
        work.settings.minio.buckets.references.name)


def test_refusals_flat_images_and_missing_consent(work, picture):
    cases.create_case(work, ADMIN, "c1", "C.")
    with pytest.raises(ConsentMissing):
        references.add_references(work, ADMIN, "c1", [("a.jpg", jpeg(picture), "image/jpeg")])
    open_case(work, "c2")
    with pytest.raises(PhotoRejected, match="too flat"):
        references.add_references(work, ADMIN, "c2", [("grey.jpg", jpeg(Image.new("RGB", (300, 300), (90,) * 3)),
                                                        "image/jpeg")])
    with pytest.raises(PhotoRejected):
        references.add_references(work, ADMIN, "c2", [("x.txt", b"not an image", "text/plain")])
    with work.sessions() as session:
        assert session.scalars(select(ReferenceMedia)).first() is None
        outcomes = [e.outcome for e in session.scalars(select(AuditEvent).where(AuditEvent.action == "add_reference"))]
    assert outcomes == ["rejected"] * 3


def test_a_rotated_reupload_matches_by_pdq_and_the_face_match_gains_the_evidence(work, picture):
    open_case(work, "c1")
    references.add_references(work, ADMIN, "c1", [("leak.jpg", jpeg(picture), "image/jpeg")])
    list_ = watchlist(work)
    rotated = scraped(picture.transpose(Image.Transpose.ROTATE_90), "d" * 64)
    stranger = scraped(Image.open(Path(__file__).parents[3] / "shared/testdata/faces/paul_rudd.jpg")
                       .convert("RGB").resize((400, 500)), "e" * 64)
    candidates = list_.hash_candidates([rotated, stranger])
    assert [(c.case_id, c.media_sha256) for c in candidates] == [("c1", "d" * 64)]
    [match] = list_.record_hash_matches(candidates, [rotated, stranger])
    assert match.signals["fired"] == ["pdq"] and match.signals["scores"]["pdq"] <= 8
    assert match.signals["details"]["pdq"]["variant"] == "rotate90"
    assert match.model_version == "pdq" and match.image_key == thumbnail_key("d" * 64, 0)
    assert list_.record_hash_matches(candidates, [rotated]) == []  # a replay: nothing new
    # Media the face path matched already: the PDQ evidence joins that match, no second one.
    from mimamori.services.watchlist import record_matches

    record_matches(work.sessions, [("c1", 7, "f" * 64, 0.97)], "memory/v1", "stream")
    again = scraped(picture, "f" * 64)
    assert list_.record_hash_matches(list_.hash_candidates([again]), [again]) == []
    with work.sessions() as session:
        face_match = session.scalars(select(Match).where(Match.face_id == 7)).one()
    assert face_match.signals["fired"] == ["face", "pdq"] and face_match.signals["scores"]["face"] == 0.97


def test_a_tight_crop_with_its_faces_mosaicked_matches_by_local_features_alone(work, picture, testdata):
    """The crop-robust signal: PDQ and the face path both miss this re-upload; the keypoints find it."""
    from tests.support import edits

    work.settings.matching.local_features = True
    open_case(work, "c1")
    # One picture enrolled twice (as a JPEG and as a PNG: two references with the same keypoints)
    # must not cancel itself in the ratio test.
    png = io.BytesIO()
    picture.save(png, "PNG")
    references.add_references(work, ADMIN, "c1", [("leak.jpg", jpeg(picture), "image/jpeg"),
                                                  ("leak.png", png.getvalue(), "image/png")])
    bucket = work.settings.minio.buckets.references.name
    stored = [k for k in work.memory_objects.keys(bucket) if k.endswith("/local-features.npz")]
    assert len(stored) == 2  # keypoints, not pixels: positions and descriptors of the picture and its mirror
    original, mirrored = from_bytes(work.memory_objects._get(bucket, stored[0]))
    assert len(original) > 100 and len(mirrored) > 100
    w, h = picture.size
    cropped = edits.crop(picture, 0.4)
    mosaicked = edits.mosaic_faces(cropped, [(w * 0.1, h * 0.1, w * 0.4, h * 0.4)], 8)
    copy = scraped(mosaicked, "d" * 64)
    assert watchlist(work).hash_candidates([copy]) == []  # by PDQ alone: too far
    copy = HashedMedia(**{**copy.__dict__, "images": ((0, mosaicked),)})
    off = work.settings.model_copy(deep=True)
    off.matching.local_features = False
    assert MediaWatchlist(off, "memory/v1", sessions=work.sessions, enrolled=work.enrolled, producer=MemoryProducer(),
                          references=work.memory_references, objects=work.memory_objects).hash_candidates([copy]) == []
    list_ = watchlist(work)
    stranger_image = Image.open(testdata / "faces" / "paul_rudd.jpg").convert("RGB")
    stranger = HashedMedia(**{**scraped(stranger_image, "e" * 64).__dict__, "images": ((0, stranger_image),)})
    [candidate] = list_.hash_candidates([copy, stranger])
    assert (candidate.case_id, candidate.media_sha256, candidate.decision.fired) == ("c1", "d" * 64, ("crop",))
    assert candidate.decision.scores["crop"] >= work.settings.matching.local_min_inliers
    assert "pdq" not in candidate.decision.scores  # no reference hash within PDQ's distance
    [match] = list_.record_hash_matches([candidate], [copy, stranger])
    assert summary(match.signals, match.similarity) == f"{int(candidate.decision.scores['crop'])} keypoints in place"
    assert 0.5 <= match.similarity < 1.0
    # Withdrawal deletes the keypoints with the reference's other objects; the next batch sees none.
    cases.withdraw(work, ADMIN, "c1")
    assert not work.memory_objects.keys(bucket)
    open_case(work, "c1")
    assert list_.hash_candidates([copy]) == []


def test_scores_computed_ahead_stand_only_for_the_references_they_were_computed_against(work, picture, testdata):
    """The pipeline scores a picture's keypoints before the writer (transforms/local_scores.py); the
    writer takes those scores where its gallery has the same references and scores afresh otherwise."""
    work.settings.matching.local_features = True
    open_case(work, "c1")
    references.add_references(work, ADMIN, "c1", [("leak.jpg", jpeg(picture), "image/jpeg")])
    stranger_image = Image.open(testdata / "faces" / "paul_rudd.jpg").convert("RGB")
    stranger = HashedMedia(**{**scraped(stranger_image, "e" * 64).__dict__, "images": ((0, stranger_image),)})
    list_ = watchlist(work)
    watched = list_.watched_cases()
    ahead = list_.local_scores(stranger, watched)
    assert ahead is not None  # another person's picture: too few verified matches
    assert ahead.best.get("c1", (0, 0))[0] < work.settings.matching.local_min_inliers
    assert [c for c, _sha, has in ahead.built_from] == ["c1"] and all(has for *_k, has in ahead.built_from)
    # A score computed ahead is taken as it is (here a forged one, to show the writer does not redo it) ...
    forged = dataclasses.replace(ahead, best={"c1": (40, 0)})
    [candidate] = list_.hash_candidates([dataclasses.replace(stranger, local=forged)], watched)
    assert candidate.decision.fired == ("crop",) and candidate.decision.scores["crop"] == 40
    # ... but not once the case's references have changed since: the writer scores the picture itself.
    references.add_references(work, ADMIN, "c1", [("other.jpg", jpeg(edits_mirror(picture)), "image/jpeg")])
    assert list_.hash_candidates([dataclasses.replace(stranger, local=forged)], watched) == []
    # Off, there is nothing to compute ahead.
    off = work.settings.model_copy(deep=True)
    off.matching.local_features = False
    assert MediaWatchlist(off, "memory/v1", sessions=work.sessions, enrolled=work.enrolled, producer=MemoryProducer(),
                          references=work.memory_references, objects=work.memory_objects
                          ).local_scores(stranger, watched) is None


def edits_mirror(image: Image.Image) -> Image.Image:
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((image.width // 2, image.height // 2))


def test_a_case_without_watchlist_consent_is_not_watched(work, picture):
    open_case(work, "c1", scope=["search"])
    references.add_references(work, ADMIN, "c1", [("leak.jpg", jpeg(picture), "image/jpeg")])
    assert watchlist(work).hash_candidates([scraped(picture, "d" * 64)]) == []


def test_the_retro_search_finds_what_was_indexed_before(work, picture):
    work.memory_media_hashes.add("a" * 64, 0, pdq_hash(picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    work.memory_media_hashes.add("b" * 64, 0, pdq_hash(Image.effect_noise((400, 300), 60).convert("RGB")))
    open_case(work, "c1")
    result = references.add_references(work, ADMIN, "c1", [("leak.jpg", jpeg(picture), "image/jpeg")])
    assert result.retro_matches == 1
    with work.sessions() as session:
        match = session.scalars(select(Match)).one()
    assert (match.media_sha256, match.source, match.signals["fired"]) == ("a" * 64, "retro", ["pdq"])


def test_a_reference_images_face_is_searched_in_the_past_too_and_its_hash_adds_to_that_match(tmp_path, testdata):
    """As at photo enrolment: with consent to search, the reference's face finds the faces indexed before;
    the same media's PDQ match then adds its evidence to that face match instead of making another."""
    face_photo = Image.open(testdata / "faces" / "paul_rudd.jpg").convert("RGB")
    centre = face_photo.getpixel((face_photo.width // 2, face_photo.height // 2))
    indexed = [StoredIndexedFace(21, "a" * 64, unit(1, 0.05)), StoredIndexedFace(22, "b" * 64, unit(0, 1)),
               StoredIndexedFace(23, "c" * 64, unit(1, 0.1))]
    work = MemoryWorkspace(load_settings("local"), tmp_path / "cases.sqlite3", {centre: [unit(1, 0)]}, indexed)
    work.memory_media_hashes.add("a" * 64, 0, pdq_hash(face_photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    open_case(work, "c1", scope=["watchlist"])  # no consent to search the past: nothing is searched
    assert references.add_references(work, ADMIN, "c1", [("leak.jpg", jpeg(face_photo), "image/jpeg")]
                                     ).retro_matches == 0
    open_case(work, "c2")
    result = references.add_references(work, ADMIN, "c2", [("leak.jpg", jpeg(face_photo), "image/jpeg")])
    assert result.retro_matches == 2  # faces 21 and 23 (the stranger 22 is under the threshold)
    with work.sessions() as session:
        found = {m.face_id: m for m in session.scalars(select(Match).where(Match.case_id == "c2"))}
    assert sorted(found) == [21, 23] and {m.source for m in found.values()} == {"retro"}
    assert found[21].signals["fired"] == ["face", "pdq"] and found[23].signals["fired"] == ["face"]


def test_an_exported_list_imported_into_another_case_matches_the_same_media(work, picture):
    """Acceptance 3 of issue 20 (the list half): export, import elsewhere, the same edited re-upload matches."""
    open_case(work, "c1")
    references.add_references(work, ADMIN, "c1", [("leak.jpg", jpeg(picture), "image/jpeg")])
    listed = references.export_hash_list(work, ADMIN, "c1")
    assert len(listed.splitlines()) == 8 and all(line.startswith("pdq ") for line in listed.splitlines())
    assert "c1" not in listed and "Client" not in listed
    open_case(work, "partner")
    imported = references.import_hash_list(work, ADMIN, "partner", listed, "from partner")
    assert imported.references[0].kind == "hash_list" and imported.references[0].hashes == 8
    reupload = scraped(picture.transpose(Image.Transpose.ROTATE_270).resize((630, 1200)), "d" * 64)
    found = {c.case_id for c in watchlist(work).hash_candidates([reupload])}
    assert found == {"c1", "partner"}
    csv_list = references.export_hash_list(work, ADMIN, "c1", "csv")
    assert parse_hash_list(csv_list).hashes == [ListedHash(h.bits, h.quality, "imported", h.frame_ms)
                                                for h in parse_hash_list(csv_list).hashes]
    assert {h.bits for h in parse_hash_list(csv_list).hashes} == {h.bits for h in parse_hash_list(listed).hashes}


def test_exporting_hashes_needs_consent_for_takedown(work, picture):
    open_case(work, "c1", scope=["search", "watchlist"])
    with pytest.raises(ConsentMissing, match="takedown"):
        references.export_hash_list(work, ADMIN, "c1")


def test_withdrawal_deletes_the_hashes_thumbnails_and_rows(work, picture):
    open_case(work, "c1")
    references.add_references(work, ADMIN, "c1", [("leak.jpg", jpeg(picture), "image/jpeg")])
    report = cases.withdraw(work, ADMIN, "c1")
    assert report.vectors >= 8 and report.objects == 1  # the thumbnail
    assert work.memory_references.count("c1") == 0
    assert not work.memory_objects.keys(work.settings.minio.buckets.references.name)
    with work.sessions() as session:
        assert session.scalars(select(ReferenceMedia)).first() is None


def test_hash_list_formats() -> None:
    bits = [bytes([i]) * 32 for i in range(3)]
    te = format_hash_list([ListedHash(b, 90) for b in bits] + [ListedHash(bits[0], 90)])  # duplicates once
    assert te.splitlines() == [f"pdq {b.hex()}" for b in bits]
    parsed = parse_hash_list("# a partner's list\n\n" + te + "video_md5 0123\nvideo_md5 4567\n" + bits[2].hex().upper())
    assert [h.bits for h in parsed.hashes] == [*bits, bits[2]] and parsed.skipped == {"video_md5": 2}
    csv_text = format_hash_list([ListedHash(bits[1], 77, "flip_x", 1500)], "csv")
    assert csv_text.splitlines() == ["signal_type,signal_value,quality,variant,frame_ms",
                                     f"pdq,{bits[1].hex()},77,flip_x,1500"]
    assert parse_hash_list(csv_text).hashes == [ListedHash(bits[1], 77, "imported", 1500)]
    bad_quality = f"signal_type,signal_value,quality\npdq,{bits[0].hex()},300\n"
    for bad, reason in (("pdq 1234\n", "line 1"), (bad_quality, "quality 300"),
                        ("signal_value\nx\n", "lacks signal_type")):
        with pytest.raises(InvalidInput, match=reason):
            parse_hash_list(bad)
    with pytest.raises(InvalidInput):
        format_hash_list([], "xml")


def test_a_hash_match_shows_its_frame_and_why_it_matched_in_the_queue(work, picture):
    from types import SimpleNamespace

    from mimamori.services import queue, review_images

    open_case(work, "c1")
    references.add_references(work, ADMIN, "c1", [("leak.jpg", jpeg(picture), "image/jpeg")])
    rotated = scraped(picture.transpose(Image.Transpose.ROTATE_90), "d" * 64)
    list_ = watchlist(work)
    candidates = list_.hash_candidates([rotated])
    work.memory_objects.put(work.settings.minio.buckets.crops.name, candidates[0].image_key, jpeg(picture))
    [match] = list_.record_hash_matches(candidates, [rotated])
    [case_queue] = queue.review_queue(work, ADMIN)
    [item] = [i for cluster in case_queue.clusters for i in cluster.items]
    assert item.matched_by.startswith("PDQ distance ") and item.matched_by.endswith("(rotate90)")
    shown = review_images.found_face_image(work, ADMIN, match.id, SimpleNamespace(blur_radius=12, greyscale=True))
    assert max(Image.open(io.BytesIO(shown)).size) == 256


def test_the_routes_add_list_export_and_import(work, picture):
    from fastapi.testclient import TestClient

    from mimamori.api.app import create_app
    from mimamori.services.auth import create_api_key

    admin = {"Authorization": f"Bearer {create_api_key(work.sessions, 'k-admin', 'admin')}"}
    open_case(work, "c1")
    open_case(work, "c2")
    with TestClient(create_app(work.settings, work), raise_server_exceptions=False) as client:
        added = client.post("/cases/c1/references", files={"media": ("leak.jpg", jpeg(picture), "image/jpeg")},
                            data={"label": "leak 1"}, headers=admin)
        assert added.status_code == 201 and added.json()["references"][0]["hashes"] == 8
        assert [r["label"] for r in client.get("/cases/c1/references", headers=admin).json()] == ["leak 1"]
        listed = client.get("/cases/c1/hashes", headers=admin)
        assert listed.status_code == 200 and len(listed.text.splitlines()) == 8
        imported = client.post("/cases/c2/hashes", files={"hash_list": ("l.txt", listed.content, "text/plain")},
                               headers=admin)
        assert imported.status_code == 201 and imported.json()["references"][0]["kind"] == "hash_list"
        bad = client.post("/cases/c2/hashes", files={"hash_list": ("l.txt", b"\xff\xfe", "text/plain")},
                          headers=admin)
        assert (bad.status_code, bad.json()["error"]) == (422, "bad_hash_list")
        assert client.post("/cases/c1/references", files={"media": ("x.pdf", b"%PDF", "application/pdf")},
                           headers=admin).status_code == 415


def test_a_reference_video_is_hashed_frame_by_frame(work, testdata):
    open_case(work, "c1")
    video = (testdata / "video" / "video_01.mp4").read_bytes()
    [view] = references.add_references(work, ADMIN, "c1", [("clip.mp4", video, "video/mp4")]).references
    assert view.kind == "video" and view.frames >= 2 and view.hashes == 8 * view.frames and view.face_vectors == 0
    frames = {h.frame_ms for h in work.memory_references.of_case("c1")}
    assert len(frames) == view.frames  # each sampled frame, by its time (ms)


def test_a_damaged_keypoints_file_leaves_the_reference_to_pdq(work, picture, caplog):
    from mimamori.services.reference_features import features_key

    work.settings.matching.local_features = True
    open_case(work, "c1")
    [view] = references.add_references(work, ADMIN, "c1", [("leak.jpg", jpeg(picture), "image/jpeg")]).references
    work.memory_objects.put(work.settings.minio.buckets.references.name, features_key("c1", view.sha256),
                            b"not an npz file")
    rotated = picture.transpose(Image.Transpose.ROTATE_90)
    copy = HashedMedia(**{**scraped(rotated, "d" * 64).__dict__, "images": ((0, rotated),)})
    [candidate] = watchlist(work).hash_candidates([copy])
    assert candidate.decision.fired == ("pdq",) and "crop" not in candidate.decision.scores
    assert "unreadable" in caplog.text


def test_keypoints_written_by_a_later_enrolment_are_found_after_the_retry_interval(work, picture):
    """A picture enrolled while the signal was off has no keypoints file; enrolled again with it on,
    the file appears under the same reference, and the watchlist asks for it again after a while."""
    from tests.support import edits

    open_case(work, "c1")
    references.add_references(work, ADMIN, "c1", [("leak.jpg", jpeg(picture), "image/jpeg")])  # signal off
    work.settings.matching.local_features = True
    list_, now = watchlist(work), [1000.0]
    list_.local.clock = lambda: now[0]
    cropped = edits.crop(picture, 0.4)
    copy = HashedMedia(**{**scraped(cropped, "d" * 64).__dict__, "images": ((0, cropped),)})
    reads = []
    read = list_.local._read
    list_.local._read = lambda *reference: reads.append(now[0]) or read(*reference)
    assert list_.hash_candidates([copy]) == []  # no keypoints to score against: found missing
    wait = list_.local.retry_missing_s
    now[0] += wait
    assert list_.hash_candidates([copy]) == []  # asked again, still missing: the next wait doubles
    now[0] += 2 * wait - 1
    list_.hash_candidates([copy])
    assert reads == [1000.0, 1000.0 + wait]  # not asked a third time before its wait is over
    references.add_references(work, ADMIN, "c1", [("leak.jpg", jpeg(picture), "image/jpeg")])  # signal on
    now[0] += 1
    [candidate] = list_.hash_candidates([copy])
    assert candidate.decision.fired == ("crop",) and len(reads) == 3


def test_the_watchlists_face_search_sees_writes_up_to_the_newest_face_of_the_watched_cases(tmp_path, testdata):
    """The enrolled faces' search, too, waits for no time tick: it sees every write up to when the watched
    cases' newest face vector was written; a watched case with no face adds no wait."""
    import numpy as np

    from mimamori.services.enrolment import add_enrolled_face
    from mimamori.services.watchlist import IndexedFace

    face_photo = Image.open(testdata / "faces" / "paul_rudd.jpg").convert("RGB")
    centre = face_photo.getpixel((face_photo.width // 2, face_photo.height // 2))
    client = np.eye(8, dtype=np.float32)[0]
    work = MemoryWorkspace(load_settings("local"), tmp_path / "cases.sqlite3", {centre: [client]})
    open_case(work, "c1")
    open_case(work, "c2")
    with work.sessions() as session:
        assert session.get(Case, "c1").faces_written_at is None  # nothing written yet
    before = utcnow()
    references.add_references(work, ADMIN, "c1", [("leak.jpg", jpeg(face_photo), "image/jpeg")])
    with work.sessions() as session:
        written = session.get(Case, "c1").faces_written_at
        assert session.get(Case, "c2").faces_written_at is None
    assert written is not None and written >= before and work.enrolled.count("c1") == 1
    [vector] = work.enrolled.vectors("c1")
    face = IndexedFace(7, "d" * 64, vector, "site:7", "https://host.example/7.jpg", "web", utcnow())
    with work.sessions.begin() as session:  # another watched case's face, written earlier: the newest counts
        session.get(Case, "c2").faces_written_at = written - dt.timedelta(hours=1)
    [match] = watchlist(work).check([face])
    assert match.case_id == "c1" and work.enrolled.written_by[-1] == written

    # The time only moves forward: a write noted with an older moment (it committed last) keeps the newer.
    later = utcnow() + dt.timedelta(minutes=5)
    with work.sessions.begin() as session:
        session.get(Case, "c1").faces_written_at = later
    add_enrolled_face(work, "c1", "e" * 64, client)
    with work.sessions() as session:
        assert session.get(Case, "c1").faces_written_at == later and work.enrolled.count("c1") == 2

    with work.sessions.begin() as session:  # no case watched has a face: every write up to now
        session.get(Case, "c1").faces_written_at = None
        session.get(Case, "c2").faces_written_at = None
    watchlist(work).check([face])
    assert work.enrolled.written_by[-1] is None


def test_a_search_waits_for_the_newest_write_and_an_unknown_time_is_strong_only_where_asked():
    from mimamori.stores.milvus import newest_write

    old, new = utcnow() - dt.timedelta(minutes=1), utcnow()
    assert newest_write([old, new, old], unknown_is_strong=False) == new
    assert newest_write([old, None, new], unknown_is_strong=False) == new  # None: nothing written there
    assert newest_write([old, None, new], unknown_is_strong=True) is None  # None: not known, so Strong
    assert newest_write([None], unknown_is_strong=False) is None and newest_write([], unknown_is_strong=True) is None


def test_the_writers_hash_search_sees_writes_up_to_the_newest_reference_of_the_watched_cases(work, picture):
    """Not Strong consistency (a wait for Milvus's next time tick in every bundle): a guarantee
    timestamp of when the references' hashes were written, plus the clocks' allowed skew."""
    from mimamori.stores.milvus import seen_writes

    open_case(work, "c1")
    references.add_references(work, ADMIN, "c1", [("leak.jpg", jpeg(picture), "image/jpeg")])
    with work.sessions() as session:
        [row] = session.scalars(select(ReferenceMedia))
    assert row.hashes_written_at is not None
    assert watchlist(work).hash_candidates([scraped(picture, "d" * 64)])  # the picture itself matches
    assert work.memory_references.written_by[-1] == row.hashes_written_at
    with work.sessions.begin() as session:  # a row from before the time was kept: every write up to now
        session.scalars(select(ReferenceMedia)).one().hashes_written_at = None
    assert watchlist(work).hash_candidates([scraped(picture, "d" * 64)])
    assert work.memory_references.written_by[-1] is None

    assert seen_writes(None, 1.0) == {"consistency_level": "Strong"}
    moment = dt.datetime(2026, 12, 3, 14, 0, tzinfo=dt.UTC)
    options = seen_writes(moment, 1.5)
    assert options["consistency_level"] == "Customized"
    assert options["guarantee_timestamp"] >> 18 == int(moment.timestamp() * 1000) + 1500
