"""SQL written once for both databases: SQLite's parameters numbered for PostgreSQL, and the dialects' JSON."""

from __future__ import annotations

import pytest

from bot.storage.sql import POSTGRES, SQLITE, arguments, numbered


def test_question_marks_are_numbered_in_order() -> None:
    sql = "UPDATE jobs SET status = ?, updated_at = ? WHERE id = ? AND status IN (?, ?)"
    assert numbered(sql) == ("UPDATE jobs SET status = $1, updated_at = $2 WHERE id = $3 AND status IN ($4, $5)", 5)


def test_named_parameters_keep_one_number_each_however_often_they_appear() -> None:
    sql = "SELECT (SELECT 1 FROM jobs WHERE user_id = :user), (SELECT 2 FROM jobs WHERE user_id = :user AND x > :since)"
    text, names = numbered(sql)
    assert text == (
        "SELECT (SELECT 1 FROM jobs WHERE user_id = $1), (SELECT 2 FROM jobs WHERE user_id = $1 AND x > $2)"
    )
    assert names == ("user", "since")
    assert arguments(sql, {"since": 5.0, "user": 42, "unused": "x"}) == (text, [42, 5.0])


@pytest.mark.parametrize(
    "literal",
    [
        "'is it ? or :name'",  # a string literal
        "'it''s ?'",  # with a quote inside
        '"odd?name"',  # a quoted identifier
        "'$.context.parent'",  # SQLite's JSON path
        "'{context,parent}'",  # PostgreSQL's
    ],
)
def test_literals_quoted_names_and_comments_are_left_alone(literal: str) -> None:
    sql = f"SELECT {literal} FROM t WHERE a = ? -- why ? and :this\n AND b = ? /* not ? either */"  # noqa: S608
    assert numbered(sql) == (
        f"SELECT {literal} FROM t WHERE a = $1 -- why ? and :this\n AND b = $2 /* not ? either */",  # noqa: S608
        2,
    )


def test_a_cast_is_not_a_parameter() -> None:
    assert numbered("SELECT (request_json)::json #>> '{a}' FROM jobs WHERE id = :id") == (
        "SELECT (request_json)::json #>> '{a}' FROM jobs WHERE id = $1",
        ("id",),
    )


def test_mixing_styles_or_miscounting_is_refused() -> None:
    with pytest.raises(ValueError, match="both"):
        numbered("SELECT ? , :a")
    with pytest.raises(ValueError, match="takes 2 parameter"):
        arguments("SELECT ?, ?", (1,))
    with pytest.raises(TypeError, match="mapping"):
        arguments("SELECT :a", (1,))
    with pytest.raises(TypeError, match="sequence"):
        arguments("SELECT ?", {"a": 1})


def test_each_dialect_reads_json_its_own_way() -> None:
    assert SQLITE.json_text("request_json", "context", "parent") == "json_extract(request_json, '$.context.parent')"
    assert POSTGRES.json_text("request_json", "context", "parent") == "((request_json)::json #>> '{context,parent}')"
    assert SQLITE.json_number("request_json", "duration_s") == "json_extract(request_json, '$.duration_s')"
    assert POSTGRES.json_number("request_json", "duration_s") == (
        "((request_json)::json #>> '{duration_s}')::double precision"
    )


@pytest.mark.parametrize("hostile", ["x'); DROP TABLE jobs; --", "a.b", "$", ""])
def test_json_paths_take_plain_names_only(hostile: str) -> None:
    for dialect in (SQLITE, POSTGRES):
        with pytest.raises(ValueError, match="not a plain name"):
            dialect.json_text("request_json", hostile)
        with pytest.raises(ValueError, match="not a plain name"):
            dialect.json_text(hostile, "a")
