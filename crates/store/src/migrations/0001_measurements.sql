-- Schema 1: measurements of commands, their devices, and the sampled power timelines.
CREATE TABLE measurements (
    id              INTEGER PRIMARY KEY,
    started_at      TEXT    NOT NULL,
    finished_at     TEXT    NOT NULL,
    started_unix_s  REAL    NOT NULL,
    wall_s          REAL    NOT NULL,
    command_json    TEXT    NOT NULL,
    exit_code       INTEGER,
    energy_j        REAL,
    avg_power_w     REAL,
    peak_power_w    REAL,
    idle_power_w    REAL,
    net_energy_j    REAL,
    window_start_s  REAL    NOT NULL,
    sampler_json    TEXT    NOT NULL,
    warnings_json   TEXT    NOT NULL,
    config_json     TEXT    NOT NULL,
    provenance_json TEXT    NOT NULL,
    tool_version    TEXT    NOT NULL,
    git_sha         TEXT    NOT NULL,
    host            TEXT    NOT NULL
);

CREATE TABLE measurement_devices (
    measurement_id        INTEGER NOT NULL REFERENCES measurements(id) ON DELETE CASCADE,
    position              INTEGER NOT NULL,
    device_id             TEXT    NOT NULL,
    device_index          INTEGER NOT NULL,
    kind                  TEXT    NOT NULL,
    sensor                TEXT    NOT NULL,
    name                  TEXT    NOT NULL,
    uuid                  TEXT,
    driver_version        TEXT,
    power_limit_w         REAL,
    power_limit_default_w REAL,
    power_limit_min_w     REAL,
    power_limit_max_w     REAL,
    capabilities_json     TEXT    NOT NULL,
    energy_j              REAL,
    energy_method         TEXT,
    counter_energy_j      REAL,
    integrated_power_j    REAL,
    avg_power_w           REAL,
    peak_power_w          REAL,
    idle_power_w          REAL,
    net_energy_j          REAL,
    counter_updates       INTEGER NOT NULL,
    mean_sm_util_pct      REAL,
    mean_mem_util_pct     REAL,
    max_mem_used_bytes    INTEGER,
    mean_sm_clock_mhz     REAL,
    max_temperature_c     REAL,
    PRIMARY KEY (measurement_id, position)
);

CREATE TABLE samples (
    measurement_id INTEGER NOT NULL REFERENCES measurements(id) ON DELETE CASCADE,
    device_id      TEXT    NOT NULL,
    t_s            REAL    NOT NULL,
    energy_j       REAL,
    power_w        REAL,
    avg_power_w    REAL,
    sm_util_pct    REAL,
    mem_util_pct   REAL,
    mem_used_bytes INTEGER,
    sm_clock_mhz   INTEGER,
    temperature_c  REAL
);

CREATE INDEX samples_by_measurement ON samples (measurement_id, device_id, t_s);
