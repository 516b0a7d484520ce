//! Dyn Managed DNS (`[dns] kind = "dynect"`): to be written.
