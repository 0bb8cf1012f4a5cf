//! How each setting of a connector is read compared with the Python connector it replaces
//! (pycti, the connectors SDK's pydantic models): the rows a connector lists, and the README
//! table rendered from them.

/// One row.
#[derive(Debug, Clone, Copy)]
pub struct Difference {
    /// The setting(s), as environment variables.
    pub setting: &'static str,
    /// The Python connector's default and how it reads the value.
    pub python: &'static str,
    /// Ours.
    pub ours: &'static str,
    /// Why ours differs; empty when it does not.
    pub why: &'static str,
    /// Values the Python connector accepts, each with its meaning there (and here), as the
    /// test renders it.
    pub accepted: &'static [(&'static str, &'static str)],
}

/// The README's table.
pub fn table(rows: &[Difference]) -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mut out = String::from(
        "| Setting | Python connector: default and parsing | Ours | Why ours differs |\n\
         |---|---|---|---|\n",
    );
    for d in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            cell(d.setting),
            cell(d.python),
            cell(d.ours),
            if d.why.is_empty() {
                "(same meaning)".to_owned()
            } else {
                cell(d.why)
            }
        ));
    }
    out
}
