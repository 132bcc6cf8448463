//! Unit tests of the pure-Rust core (no Python). Requests come from `builder`, COPY payloads
//! are read back with `copy_reader`.

mod builder;
mod copy_reader;
mod random_requests;
mod view_reference;

mod test_copy_binary;
mod test_decode;
mod test_differential;
mod test_histogram_chunks;
mod test_ingest;
mod test_key_cache;
mod test_rejections;
mod test_replay;
mod test_series;
mod test_shutdown_replay;
mod test_speed;
mod test_tdigest;
mod test_tdigest_accuracy;
mod test_tenants;
mod test_trace_decode;
mod test_trace_sampling;
mod test_trace_tenants;
mod test_traces;
mod test_window_agg;
mod test_window_change;
mod test_windows;
