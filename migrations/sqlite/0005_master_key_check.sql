-- A check value of the master key the database's secrets are sealed with (an HMAC of a fixed
-- label, which reveals nothing of the key). Commands that open the database with a master key
-- compare it first, so that a wrong key is refused at once instead of sealing new secrets that
-- no other process can open.
CREATE TABLE master_key_check (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    check_value TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
