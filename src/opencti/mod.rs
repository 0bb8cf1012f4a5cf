//! (opencti: under construction)
