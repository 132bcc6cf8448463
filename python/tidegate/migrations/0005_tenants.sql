-- Tenants, API keys and live configuration (docs/architecture.md, "Tenants" and "Live
-- configuration").
--
-- Every series, rollup and trace index row belongs to one tenant; the tenant is part of a
-- series' identity, so two tenants never share a series id. Rows written before tenants
-- existed belong to the tenant 'default', the one unauthenticated requests write to.

ALTER TABLE series ADD COLUMN tenant text NOT NULL DEFAULT 'default';
DROP INDEX series_metric_name;
CREATE INDEX series_tenant_metric_name ON series (tenant, metric_name);

ALTER TABLE rollups ADD COLUMN tenant text NOT NULL DEFAULT 'default';

ALTER TABLE trace_index ADD COLUMN tenant text NOT NULL DEFAULT 'default';
DROP INDEX trace_index_service_start;
CREATE INDEX trace_index_tenant_service_start ON trace_index (tenant, service, start_time);

ALTER TABLE tidegate_dead_letters ADD COLUMN tenant text NOT NULL DEFAULT 'default';

-- API keys: only a SHA-256 of each key is kept; `key_id` (a public part of the key) finds
-- the row, the hash is then compared in constant time.
CREATE TABLE tidegate_api_keys (
    key_id      text PRIMARY KEY,
    tenant      text NOT NULL,
    key_sha256  bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX tidegate_api_keys_tenant ON tidegate_api_keys (tenant);

-- Live settings when `live.source = "postgres"`: one row per key, the value as text, parsed
-- and validated by each daemon.
CREATE TABLE tidegate_config (
    key         text PRIMARY KEY,
    value       text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Every running daemon LISTENs on these channels: a change reaches all of them at once.
CREATE FUNCTION tidegate_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'tidegate_config' THEN
        PERFORM pg_notify('tidegate_config', CASE WHEN TG_OP = 'DELETE' THEN OLD.key ELSE NEW.key END);
    ELSE
        PERFORM pg_notify('tidegate_api_keys',
                          CASE WHEN TG_OP = 'DELETE' THEN OLD.key_id ELSE NEW.key_id END);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER tidegate_config_notify AFTER INSERT OR UPDATE OR DELETE ON tidegate_config
    FOR EACH ROW EXECUTE FUNCTION tidegate_notify_change();
CREATE TRIGGER tidegate_api_keys_notify AFTER INSERT OR UPDATE OR DELETE ON tidegate_api_keys
    FOR EACH ROW EXECUTE FUNCTION tidegate_notify_change();
