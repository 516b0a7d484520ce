//! RFC 2136 dynamic updates with TSIG (`[dns] kind = "rfc2136"`): to be written.
