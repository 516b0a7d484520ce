//! BIND 9 `named` for the rfc2136 tests: to be written.
