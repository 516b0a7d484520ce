//! The DNS reconciler: to be written.
