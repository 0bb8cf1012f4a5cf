//! The committed `__metadata__/` files and `config.yml.sample` are exactly what the settings
//! table generates: run `cargo run -- metadata` after changing a setting.

#[test]
fn committed_metadata_matches_the_settings_table() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stale = Vec::new();
    for (rel, generated) in arcsight_incidents::metadata::files() {
        let committed = std::fs::read_to_string(root.join(rel)).unwrap_or_default();
        if committed != generated {
            stale.push(rel);
        }
    }
    assert!(
        stale.is_empty(),
        "stale (run `cargo run -- metadata`): {stale:?}"
    );
}

#[test]
fn the_readme_settings_table_matches_the_settings_table() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let regenerated = arcsight_incidents::metadata::readme_with_settings(&readme)
        .expect("README.md has the settings table markers");
    assert!(
        regenerated == readme,
        "README.md's settings table is stale: run `cargo run -- metadata`"
    );
}
