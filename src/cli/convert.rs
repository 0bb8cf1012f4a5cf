//! `arcsight-incidents convert`: ESM cases as JSON lines in, one STIX bundle per line out.
//!
//! Needs no settings and no network, so an operator can preview how an exported case will look
//! in OpenCTI. A malformed line is reported (with its number) and skipped; the others go on.

use std::io::{BufRead, Write};

use serde::Deserialize;
use serde_json::Value;

use crate::convert::{ConvertOptions, Converter};
use crate::esm::model::{Case, SecurityEvent, as_list};
use crate::stix::Tlp;

/// One input line: `{"case": {...}, "events": [...], "tlp": "amber"}` (events and tlp optional).
#[derive(Debug, Deserialize)]
struct Line {
    case: Value,
    #[serde(default)]
    events: Value,
    #[serde(default)]
    tlp: Option<String>,
}

/// What a conversion did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) converted: usize,
    pub(crate) failed: usize,
}

/// Converts every line of `input` to `output`; problems go to `errors` as `line N: why`.
pub(crate) fn convert_lines(
    mut input: impl BufRead,
    mut output: impl Write,
    mut errors: impl Write,
    default_tlp: Tlp,
    import_observables: bool,
) -> std::io::Result<Summary> {
    let mut summary = Summary::default();
    let mut raw = Vec::new();
    let mut number = 0usize;
    loop {
        raw.clear();
        if input.read_until(b'\n', &mut raw)? == 0 {
            break;
        }
        number += 1;
        // One line of invalid UTF-8 is that line's problem, not the whole stream's.
        let Ok(line) = std::str::from_utf8(&raw) else {
            writeln!(errors, "line {number}: not valid UTF-8")?;
            summary.failed += 1;
            continue;
        };
        if line.trim().is_empty() {
            continue;
        }
        match convert_one(line, default_tlp, import_observables) {
            Ok(text) => {
                output.write_all(text.as_bytes())?;
                output.write_all(b"\n")?;
                summary.converted += 1;
            }
            Err(why) => {
                writeln!(errors, "line {number}: {why}")?;
                summary.failed += 1;
            }
        }
    }
    output.flush()?;
    Ok(summary)
}

fn convert_one(line: &str, default_tlp: Tlp, import_observables: bool) -> Result<String, String> {
    let parsed: Line = serde_json::from_str(line)
        .map_err(|e| format!("not a JSON object with a \"case\": {e}"))?;
    let tlp = match parsed.tlp.as_deref() {
        Some(t) => t.parse::<Tlp>().map_err(|e| format!("\"tlp\": {e}"))?,
        None => default_tlp,
    };
    let case = Case::from_value(&parsed.case).ok_or("\"case\" is not a JSON object")?;
    let events: Vec<SecurityEvent> = as_list(Some(&parsed.events))
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            SecurityEvent::from_value(e).ok_or(format!("event #{} is not a JSON object", i + 1))
        })
        .collect::<Result<_, _>>()?;
    let converter = Converter::new(ConvertOptions {
        tlp,
        import_observables,
    });
    let bundle = converter.case_bundle(&case, &events);
    serde_json::to_string(&bundle).map_err(|e| format!("cannot serialise the bundle: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &str, tlp: Tlp) -> (String, String, Summary) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let s = convert_lines(input.as_bytes(), &mut out, &mut err, tlp, true).unwrap();
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
            s,
        )
    }

    #[test]
    fn bad_lines_are_reported_and_skipped() {
        let input = "{\"case\":{\"name\":\"a\"}}\nnot json\n\n{\"case\":5}\n{\"case\":{},\"tlp\":\"purple\"}\n{\"case\":{\"name\":\"b\"},\"events\":{\"eventId\":1}}\n";
        let (out, err, s) = run(input, Tlp::Amber);
        assert_eq!(
            s,
            Summary {
                converted: 2,
                failed: 3
            }
        );
        assert_eq!(out.lines().count(), 2);
        let err_lines: Vec<&str> = err.lines().collect();
        assert!(err_lines[0].starts_with("line 2: "), "{err}");
        assert!(err_lines[1].starts_with("line 4: "), "{err}");
        assert!(
            err_lines[2].starts_with("line 5: \"tlp\": \"purple\" is not one of"),
            "{err}"
        );
    }

    #[test]
    fn a_line_of_invalid_utf8_is_reported_and_the_others_converted() {
        let mut input = b"{\"case\":{\"name\":\"a\"}}\n".to_vec();
        input.extend_from_slice(b"{\"case\":{\"name\":\"\xff\xfe\"}}\n");
        input.extend_from_slice(b"{\"case\":{\"name\":\"c\"}}");
        let mut out = Vec::new();
        let mut err = Vec::new();
        let s = convert_lines(&input[..], &mut out, &mut err, Tlp::Amber, true).unwrap();
        assert_eq!(
            s,
            Summary {
                converted: 2,
                failed: 1
            }
        );
        assert_eq!(String::from_utf8(err).unwrap(), "line 2: not valid UTF-8\n");
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 2);
    }

    #[test]
    fn line_tlp_wins_over_the_default() {
        let (out, _, _) = run("{\"case\":{},\"tlp\":\"red\"}\n{\"case\":{}}\n", Tlp::Green);
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let marking = |v: &Value| {
            v["objects"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["type"] == "marking-definition")
                .unwrap()["id"]
                .clone()
        };
        assert_eq!(marking(&lines[0]), Tlp::Red.marking_id());
        assert_eq!(marking(&lines[1]), Tlp::Green.marking_id());
    }
}
