-- Kernel builds the operator added (`kafka-tasks kernels add`), per engine version, in the order
-- they were added (`seq`). The built-in builds (src/domain/kernel.rs) come before them; the
-- last one is the latest. Builds are never removed.
CREATE TABLE kernel_builds (
    seq            BIGSERIAL PRIMARY KEY,
    engine_version TEXT NOT NULL,
    build          TEXT NOT NULL,
    added_at       BIGINT NOT NULL,
    UNIQUE (engine_version, build)
);
