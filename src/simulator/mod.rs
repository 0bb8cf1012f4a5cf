//! (simulator: under construction)
