//! Where the test data lives: `tests/data/` in the repository (see its README), so that a clone
//! made anywhere runs the tests with nothing beside it.

/// The folder of ESM answer fixtures.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fixtures/esm");
/// The platform's GraphQL schema, kept by the platform simulator.
pub use platform_simulator::SCHEMA_PATH as SCHEMA;
/// The golden files: ids computed by pycti, and the Python connector's output.
pub const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/golden");

/// A file's text; panics naming the path (a missing file is a broken checkout, not a skip).
pub fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// An ESM fixture's text.
pub fn fixture(name: &str) -> String {
    read(&format!("{FIXTURES}/{name}"))
}
