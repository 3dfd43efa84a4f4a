"""The tests' PostgreSQL: found where the machine has one, else started from the system's binaries; never a
silent skip."""

import psycopg2
import pytest

from zk_pipelines_tests import postgres


def _one(url: str) -> int:
    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone()[0]
    finally:
        connection.close()


def test_each_test_gets_an_empty_database_of_its_own_on_a_real_server(postgres_server, postgres_url):
    assert _one(postgres_url) == 1
    connection = psycopg2.connect(postgres_url)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        assert cursor.fetchone()[0] == 0
    connection.close()


@pytest.mark.slow
def test_without_a_running_server_a_throwaway_one_is_started_from_the_binaries_and_stopped(monkeypatch):
    monkeypatch.delenv("ZK_TEST_POSTGRES_URL", raising=False)
    monkeypatch.setattr(postgres, "LOCAL_URL", "postgresql://postgres@127.0.0.1:1/none")  # nothing listens there
    server = postgres.find_or_start()
    try:
        assert server.source == "throwaway"
        with postgres.fresh_database(server) as url:
            assert _one(url) == 1
    finally:
        server.stop()
    assert postgres._answers(server.url) is not None  # stopped


def test_a_given_url_that_does_not_answer_is_a_one_line_reason_not_a_skip(monkeypatch):
    monkeypatch.setenv("ZK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:1/none")
    with pytest.raises(postgres.PostgresUnavailable, match="^ZK_TEST_POSTGRES_URL does not answer: ") as caught:
        postgres.find_or_start()
    assert "\n" not in str(caught.value)
