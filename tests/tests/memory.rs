//! The conformance suite against `MemorySink` with simulated clients: the cases that need no
//! socket (order, targeting, legacy vs metadata bytes, announcements off, sender output).

#[path = "suite/mod.rs"]
mod suite;

memory_suite!();
