//! The conformance suite against `pngcast-blocking` (a thread per client).

#[path = "suite/mod.rs"]
mod suite;

// The backend adapters are shared with the hostile-input and fault suites.
#[allow(dead_code)]
#[path = "hostile/backends.rs"]
mod backends;

network_suite!(backends::Blocking);
