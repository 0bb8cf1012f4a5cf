//! (metadata: under construction)
