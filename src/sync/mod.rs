//! (sync: under construction)
