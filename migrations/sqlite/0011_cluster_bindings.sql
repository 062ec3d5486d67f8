-- Connected mode: the Apache Kafka cluster an instance is bound to. `binding` is the checked
-- binding as JSON (src/domain/cluster.rs), never a secret; a SASL password given inline is kept
-- sealed with the master key in `password_sealed`. The row goes with its instance.
CREATE TABLE cluster_bindings (
    instance_id     TEXT PRIMARY KEY,
    project_id      TEXT NOT NULL,
    binding         TEXT NOT NULL,
    password_sealed BLOB,
    updated_at      INTEGER NOT NULL
) STRICT;
