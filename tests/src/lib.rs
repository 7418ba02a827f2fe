//! Integration tests for pngcast live in `tests/tests/`.
