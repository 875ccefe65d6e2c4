"""Reader for the MovieLens layouts: ML-1M `.dat` files, the GroupLens ML-100K zip layout and RecBole atomic files."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from ._io import (
    FIX_HINT,
    DataFormatError,
    PathLike,
    clean_str,
    find_file,
    iter_lines,
    missing_files_error,
    parse_timestamp,
    read_user_sequences,
)
from .interactions import InteractionData, build_interaction_data
from .recbole import read_recbole_atomic

logger = logging.getLogger(__name__)

# `u.genre` of ML-100K, by flag position; used when the folder has no `u.genre`.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
USER_FIELDS = ("age", "gender", "occupation", "zip_code")
_TITLE_YEAR = re.compile(r"^(.*?)\s*\((\d{4})\)\s*$")
# GroupLens files predate UTF-8 (`Misérables` is one byte there).
ENCODING = "latin-1"


def split_title_year(title: str) -> tuple[str | None, str | None]:
    """Split `"Toy Story (1995)"` into `("Toy Story", "1995")`; titles without a year keep their text."""
    match = _TITLE_YEAR.match(title.strip())
    if match:
        return clean_str(match.group(1)), match.group(2)
    return clean_str(title), None


def _records(path: Path, sep: str, n_fields: int, layout: str) -> Iterator[tuple[int, list[str]]]:
    for line, text in iter_lines(path, ENCODING):
        if not text.strip():
            continue
        parts = text.split(sep)
        if len(parts) != n_fields:
            raise DataFormatError(
                path, line, f"expected {n_fields} {sep!r}-separated fields ({layout}), found {len(parts)}", FIX_HINT
            )
        yield line, parts


def _check_ids(path: Path, line: int, **ids: str) -> None:
    for field, value in ids.items():
        if not value.strip().isdigit():
            raise DataFormatError(path, line, f"{field} {value!r} is not an integer id", FIX_HINT)


def read_ratings(
    path: PathLike, sep: str = "::"
) -> tuple[list[str], list[list[str]], list[list[int]], dict[str, int]]:
    """
    Read `UserID<sep>MovieID<sep>Rating<sep>Timestamp` lines (ML-1M `ratings.dat`, ML-100K `u.data` with a tab).

    Returns `(user_ids, item_seqs, timestamps, first_line_of_user)`, users in order of first appearance and each
    user's movies sorted by timestamp; equal timestamps keep file order (a stable sort).
    """
    path = Path(path)
    per_user: dict[str, list[tuple[int, str]]] = {}
    first_line: dict[str, int] = {}
    layout = f"UserID{sep}MovieID{sep}Rating{sep}Timestamp".replace("\t", "<TAB>")
    for line, text in iter_lines(path, ENCODING):  # a tight loop: ML-1M has a million lines
        parts = text.split(sep)
        if len(parts) != 4:
            if not text.strip():
                continue
            raise DataFormatError(
                path, line, f"expected 4 {sep!r}-separated fields ({layout}), found {len(parts)}", FIX_HINT
            )
        user, item, _, when = parts
        if not (user.isdigit() and item.isdigit()):
            _check_ids(path, line, UserID=user, MovieID=item)
            user, item = user.strip(), item.strip()
        try:
            stamp = int(when)
        except ValueError:
            stamp = parse_timestamp(when.strip(), path, line)
        events = per_user.get(user)
        if events is None:
            events = per_user[user] = []
            first_line[user] = line
        events.append((stamp, item))
    user_ids = list(per_user)
    item_seqs, timestamps = [], []
    for user in user_ids:
        events = sorted(per_user[user], key=lambda e: e[0])
        item_seqs.append([item for _, item in events])
        timestamps.append([stamp for stamp, _ in events])
    return user_ids, item_seqs, timestamps, first_line


def read_movies_dat(path: PathLike) -> dict[str, dict[str, Any]]:
    """Read ML-1M `movies.dat` (`MovieID::Title (Year)::Genre|Genre`) into item rows."""
    path = Path(path)
    items: dict[str, dict[str, Any]] = {}
    for line, (movie, title, genres) in _records(path, "::", 3, "MovieID::Title::Genres"):
        _check_ids(path, line, MovieID=movie)
        name, year = split_title_year(title)
        items[movie.strip()] = {"title": name, "categories": [g for g in genres.split("|") if g], "release_year": year}
    return items


def read_users_dat(path: PathLike) -> dict[str, dict[str, Any]]:
    """Read ML-1M `users.dat` (`UserID::Gender::Age::Occupation::Zip-code`)."""
    users = {}
    for _, (user, gender, age, occupation, zip_code) in _records(
        Path(path), "::", 5, "UserID::Gender::Age::Occupation::Zip-code"
    ):
        users[user.strip()] = {"age": age, "gender": gender, "occupation": occupation, "zip_code": zip_code}
    return users


def read_u_item(path: PathLike, genres: tuple[str, ...] = ML100K_GENRES) -> dict[str, dict[str, Any]]:
    """Read ML-100K `u.item` (`id|title|release date|video date|IMDb URL|` + one 0/1 flag per genre)."""
    path = Path(path)
    items: dict[str, dict[str, Any]] = {}
    layout = "movie id|title|release date|video release date|IMDb URL|" + "|".join(genres)
    for line, parts in _records(path, "|", 5 + len(genres), layout):
        _check_ids(path, line, movie_id=parts[0])
        flags = parts[5:]
        if any(flag not in ("0", "1") for flag in flags):
            raise DataFormatError(path, line, f"genre flags must be 0 or 1, found {flags}", FIX_HINT)
        name, year = split_title_year(parts[1])
        date = parts[2].strip()  # e.g. 01-Jan-1995; the title's year is the fallback
        items[parts[0].strip()] = {
            "title": name,
            "categories": [genre for genre, flag in zip(genres, flags) if flag == "1"],
            "release_year": date[-4:] if date[-4:].isdigit() else year,
        }
    return items


def read_u_genre(path: PathLike) -> tuple[str, ...]:
    """Read ML-100K `u.genre` (`name|index`) into genre names ordered by index."""
    path = Path(path)
    pairs = []
    for line, (name, index) in _records(path, "|", 2, "genre|index"):
        _check_ids(path, line, index=index)
        pairs.append((int(index), name))
    return tuple(name for _, name in sorted(pairs))


def read_u_user(path: PathLike) -> dict[str, dict[str, Any]]:
    """Read ML-100K `u.user` (`user id|age|gender|occupation|zip code`)."""
    users = {}
    for _, (user, age, gender, occupation, zip_code) in _records(
        Path(path), "|", 5, "user id|age|gender|occupation|zip code"
    ):
        users[user.strip()] = {"age": age, "gender": gender, "occupation": occupation, "zip_code": zip_code}
    return users


def _user_columns(user_ids: list[str], users: dict[str, dict[str, Any]] | None) -> dict[str, pa.Array] | None:
    if users is None:
        return None
    absent = sum(1 for u in user_ids if u not in users)
    if absent:
        logger.warning("%d of %d users have no demographics row; their user fields are None.", absent, len(user_ids))
    return {f: pa.array([clean_str(users.get(u, {}).get(f)) for u in user_ids], pa.string()) for f in USER_FIELDS}


def _attach_partial_timestamps(
    seq_path: Path, ratings_path: Path, user_ids: list[str], item_seqs: list[list[str]]
) -> list[list[int] | None]:
    """Give users found in a partial ratings file their timestamps, aligned with the (authoritative) sequence order."""
    rated_users, rated_seqs, rated_times, first_line = read_ratings(ratings_path)
    by_user = {u: dict(zip(seq, times)) for u, seq, times in zip(rated_users, rated_seqs, rated_times)}
    known = set(user_ids)
    for user in rated_users:
        if user not in known:
            raise DataFormatError(
                ratings_path,
                first_line[user],
                f"user {user} has ratings but no sequence in {seq_path}",
                "Both files must come from the same dataset version.",
            )
    timestamps: list[list[int] | None] = []
    for user, seq in zip(user_ids, item_seqs):
        stamps = by_user.get(user)
        if stamps is None:
            timestamps.append(None)
            continue
        if len(stamps) != len(seq) or any(item not in stamps for item in seq):
            raise DataFormatError(
                ratings_path,
                first_line[user],
                f"user {user}'s ratings ({len(stamps)} distinct movies) do not match their sequence in {seq_path} "
                f"({len(seq)} movies)",
                "Both files must come from the same dataset version.",
            )
        timestamps.append([stamps[item] for item in seq])
    return timestamps


LOOKED_FOR = [
    "ratings.dat (+ movies.dat, users.dat): ML-1M",
    "derived/sequences.txt (+ ratings.partial.dat, movies.dat): ML-1M with partial timestamps",
    "u.data (+ u.item, u.user, u.genre): ML-100K",
    "*.inter (+ *.item, *.user): RecBole atomic files",
]


def read_movielens(folder: PathLike, *, name: str | None = None) -> InteractionData:
    """
    Read a MovieLens folder into an [`InteractionData`]; the layout is detected from the files present.

    Layouts, in order of preference:
    - ML-1M: `ratings.dat` (`UserID::MovieID::Rating::Timestamp`, ISO-8859-1) + `movies.dat` + `users.dat`.
    - ML-1M without the full ratings: `derived/sequences.txt.gz` (`UserID MovieID ...`, time order) gives the
      order of every user; `ratings.partial.dat.gz` gives the timestamps of the users it holds (others get `None`).
    - ML-100K as distributed by GroupLens: `u.data` (tab-separated) + `u.item` + `u.user` (+ `u.genre`).
    - RecBole atomic files: `<name>.inter` + `<name>.item` + `<name>.user`.

    Titles lose their `(Year)` suffix, which goes to the extra column `release_year`; genres become `categories`;
    user demographics become extra columns of `sequences`. Each user's movies are sorted by timestamp, ties in
    file order.

    Args:
        folder: The dataset folder, e.g. `<data root>/ml-1m`.
        name: Dataset name; defaults to the folder name.
    """
    folder = Path(folder)
    name = name or folder.name
    movies = find_file(folder, ["movies.dat"])
    users_dat = find_file(folder, ["users.dat"])
    items = read_movies_dat(movies) if movies else None
    source = str(movies) if movies else f"no movies.dat in {folder}"

    user_rows = None  # the u.data layout reads its own u.user; the others read users.dat below
    ratings = find_file(folder, ["ratings.dat"])
    sequences = find_file(folder, ["derived/sequences.txt", "sequences.txt"])
    if ratings is not None:
        user_ids, item_seqs, timestamps, _ = read_ratings(ratings)
    elif sequences is not None:
        user_ids, item_seqs, seq_lines = read_user_sequences(sequences, ENCODING)
        for line, user, seq in zip(seq_lines, user_ids, item_seqs):
            _check_ids(sequences, line, UserID=user)
            bad = next((item for item in seq if not item.isdigit()), None)
            if bad is not None:
                _check_ids(sequences, line, MovieID=bad)
        partial = find_file(folder, ["ratings.partial.dat"])
        if partial is not None:
            timestamps = _attach_partial_timestamps(sequences, partial, user_ids, item_seqs)
        else:
            logger.warning("%s has no ratings file; timestamps are unknown for every user.", folder)
            timestamps = None
    elif (u_data := find_file(folder, ["u.data"])) is not None:
        user_ids, item_seqs, timestamps, _ = read_ratings(u_data, sep="\t")
        u_genre = find_file(folder, ["u.genre"])
        genres = read_u_genre(u_genre) if u_genre else ML100K_GENRES
        u_item = find_file(folder, ["u.item"])
        items, source = (read_u_item(u_item, genres), str(u_item)) if u_item else (None, f"no u.item in {folder}")
        u_user = find_file(folder, ["u.user"])
        user_rows = read_u_user(u_user) if u_user else None
    else:
        inters = sorted(folder.glob("*.inter")) if folder.is_dir() else []
        if not inters:
            raise missing_files_error(folder, "MovieLens files", LOOKED_FOR)
        inter = next((p for p in inters if p.stem == folder.name), inters[0])
        item, user = inter.with_suffix(".item"), inter.with_suffix(".user")
        return read_recbole_atomic(
            inter, item if item.is_file() else None, user if user.is_file() else None, name=name
        )
    if user_rows is None and users_dat is not None:
        user_rows = read_users_dat(users_dat)
    return build_interaction_data(
        name,
        user_ids,
        item_seqs,
        timestamps,
        items,
        extra_item_types={"release_year": pa.string()},
        user_columns=_user_columns(user_ids, user_rows),
        metadata_source=source,
    )
