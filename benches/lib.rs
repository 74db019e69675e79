//! Benchmarks of `mcp-policy` live in this package's `[[bench]]` targets (`evaluate`,
//! `threads`, `redis`), kept apart from the library so that building it, its examples or
//! its tests never compiles criterion or governor. Run `cargo bench -p mcp-policy-benches`
//! (add `--features redis` for the Redis bench); BENCHMARKS.md records results.
