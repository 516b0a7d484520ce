//! The embedded DNS server (`[dns] kind = "embedded"`): to be written.
