//! DNS queries for the tests (hickory): to be written.
