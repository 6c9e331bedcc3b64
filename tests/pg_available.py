"""Exit 0 when a PostgreSQL server answers at the URL given, 1 otherwise (used by `make test`)."""
import sys

import psycopg
from sqlalchemy import make_url


def main(url: str) -> int:
    parsed = make_url(url)
    try:
        with psycopg.connect(host=parsed.host or "localhost", port=parsed.port or 5432,
                             user=parsed.username, password=parsed.password,
                             dbname=parsed.database or "postgres", connect_timeout=3):
            return 0
    except psycopg.Error:
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
