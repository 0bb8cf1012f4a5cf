//! (metrics: under construction)
