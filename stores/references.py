"""Reference media of a case: the client's known images and videos (the leaked originals).

One row per reference (an image, a video, or a hash list imported from a partner), kept with the
case and deleted with it (ON DELETE CASCADE). What matching needs lives elsewhere: the PDQ
hashes in Milvus (stores/image_hashes.py, the case's partition), a face vector in the enrolled
collection when the image shows exactly one face, and a small blurred thumbnail for the
reviewer in the references bucket. The original itself is stored only when the organisation
turned that on (``original_key``); by default it is not kept anywhere.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mimamori.stores.cases import Base, UTCDateTime, utcnow

REFERENCE_KINDS = ("image", "video", "hash_list")


class ReferenceMedia(Base):
    __tablename__ = "reference_media"
    __table_args__ = (UniqueConstraint("case_id", "sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))  # of the media's bytes (a hash list: of the file)
    kind: Mapped[str] = mapped_column(String(16))  # one of REFERENCE_KINDS
    label: Mapped[str | None] = mapped_column(String(200), nullable=True)  # staff's own words, no client name needed
    frames: Mapped[int] = mapped_column(Integer, default=1)  # hashed frames (an image: 1)
    hashes: Mapped[int] = mapped_column(Integer, default=0)  # rows in the reference collection
    min_quality: Mapped[int | None] = mapped_column(Integer, nullable=True)  # lowest PDQ quality of its frames
    face_vectors: Mapped[int] = mapped_column(Integer, default=0)  # enrolled faces (0 unless one face)
    thumbnail_key: Mapped[str | None] = mapped_column(String(300), nullable=True)  # blurred, references bucket
    original_key: Mapped[str | None] = mapped_column(String(300), nullable=True)  # only if the organisation keeps them
    added_by: Mapped[str] = mapped_column(String(200))
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # When its hashes were last written to Milvus (after the write was acknowledged): what the
    # pipeline's image-hash search must see (stores/image_hashes.py, ``ReferenceHashes.nearest``)
    hashes_written_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
