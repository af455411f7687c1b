-- Schema 2: benchmark runs, their batches and their requests. A run's energy window (devices and
-- power timeline) is a row of `measurements`.
CREATE TABLE runs (
    id             INTEGER PRIMARY KEY,
    key            TEXT    NOT NULL,
    sweep          TEXT,
    repeat         INTEGER NOT NULL,
    status         TEXT    NOT NULL CHECK (status IN ('complete', 'infeasible', 'failed')),
    reason         TEXT,
    measurement_id INTEGER REFERENCES measurements(id) ON DELETE SET NULL,
    model          TEXT    NOT NULL,
    dataset        TEXT    NOT NULL,
    device         TEXT    NOT NULL,
    batch_size     INTEGER NOT NULL,
    max_new_tokens INTEGER NOT NULL,
    started_at     TEXT    NOT NULL,
    wall_s         REAL    NOT NULL,
    warmup_s       REAL    NOT NULL,
    harness_s      REAL    NOT NULL,
    energy_j       REAL,
    config_json    TEXT    NOT NULL,
    notes_json     TEXT    NOT NULL
);

CREATE INDEX runs_by_key ON runs (key, repeat);

CREATE TABLE batches (
    run_id            INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    idx               INTEGER NOT NULL,
    start_s           REAL    NOT NULL,
    wall_s            REAL    NOT NULL,
    prefill_s         REAL    NOT NULL,
    decode_s          REAL    NOT NULL,
    prompts           INTEGER NOT NULL,
    padded_prompt_len INTEGER NOT NULL,
    input_tokens      INTEGER NOT NULL,
    output_tokens     INTEGER NOT NULL,
    energy_j          REAL,
    avg_power_w       REAL,
    PRIMARY KEY (run_id, idx)
);

CREATE TABLE requests (
    run_id        INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    batch         INTEGER NOT NULL,
    position      INTEGER NOT NULL,
    dataset_index INTEGER NOT NULL,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    words         INTEGER,
    finish        TEXT    NOT NULL,
    energy_j      REAL,
    latency_s     REAL    NOT NULL,
    output_text   TEXT,
    correct       INTEGER,
    PRIMARY KEY (run_id, batch, position)
);
