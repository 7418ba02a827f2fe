//! The conformance suite against `pngcast-mio`.

#[path = "suite/mod.rs"]
mod suite;

// The backend adapters are shared with the hostile-input and fault suites.
#[allow(dead_code)]
#[path = "hostile/backends.rs"]
mod backends;

network_suite!(backends::Mio);
