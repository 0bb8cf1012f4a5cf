//! (delivery: under construction)
