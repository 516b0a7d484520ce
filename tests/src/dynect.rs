//! A contract server of the Dyn Managed DNS REST API: to be written.
