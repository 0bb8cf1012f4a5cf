//! The stream connector's settings table and section readers (names as the Python connector's).
