-- Test control (`serve --test-control`, src/control): the fault rules and the clock's offset,
-- one JSON value per key, so that every process on the database reads the same ones. A server
-- without the flag never reads this table.
CREATE TABLE test_control (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
