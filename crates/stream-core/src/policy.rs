//! Which indicators contribute values to the list, and which values.

use crate::pattern::{self, ExtractPolicy, Extracted, Skip};

/// What the ledger needs of a STIX indicator.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Indicator {
    /// The STIX id (`indicator--…`, derived from the pattern, so it changes with it).
    pub id: String,
    /// The OpenCTI internal id (extension `id`), stable across pattern changes.
    pub internal_id: Option<String>,
    pub pattern: Option<String>,
    pub pattern_type: Option<String>,
    pub revoked: bool,
    /// `x_opencti_detection` or the extension's `detection`.
    pub detection: Option<bool>,
    /// `x_opencti_score` or the extension's `score`.
    pub score: Option<i64>,
    /// Unix milliseconds.
    pub valid_from: Option<i64>,
    /// Unix milliseconds.
    pub valid_until: Option<i64>,
}

impl Indicator {
    /// The ledger key: the internal id when the event carries it (it survives a pattern
    /// change), else the STIX id.
    pub fn key(&self) -> &str {
        self.internal_id.as_deref().unwrap_or(&self.id)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub extract: ExtractPolicy,
    /// Indicators scoring below this contribute nothing; a missing score counts as 0.
    pub min_score: Option<i64>,
}

/// Why an indicator contributes nothing (counted by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exclusion {
    NotStix,
    NoPattern,
    Revoked,
    DetectionOff,
    ScoreBelowMinimum,
    Expired,
    Pattern(Skip),
}

/// The values `ind` puts in the list at `now` (ms) and until when, or why none.
/// `valid_from` is not gated on: OpenCTI sets it to the creation time, and the Python
/// connector ignores it.
pub fn evaluate(
    ind: &Indicator,
    policy: &Policy,
    now: i64,
) -> Result<(Vec<Extracted>, Option<i64>), Exclusion> {
    if ind.pattern_type.as_deref() != Some("stix") {
        return Err(Exclusion::NotStix);
    }
    if ind.revoked {
        return Err(Exclusion::Revoked);
    }
    if ind.detection == Some(false) {
        return Err(Exclusion::DetectionOff);
    }
    if let Some(min) = policy.min_score {
        if ind.score.unwrap_or(0) < min {
            return Err(Exclusion::ScoreBelowMinimum);
        }
    }
    if ind.valid_until.is_some_and(|u| u <= now) {
        return Err(Exclusion::Expired);
    }
    let p = ind.pattern.as_deref().ok_or(Exclusion::NoPattern)?;
    let values = pattern::extract_str(p, policy.extract).map_err(Exclusion::Pattern)?;
    Ok((values, ind.valid_until))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ind() -> Indicator {
        Indicator {
            id: "indicator--1".into(),
            pattern: Some("[ipv4-addr:value = '1.2.3.4']".into()),
            pattern_type: Some("stix".into()),
            ..Default::default()
        }
    }

    #[test]
    fn each_exclusion() {
        let p = Policy {
            min_score: Some(50),
            ..Default::default()
        };
        let base = Indicator {
            score: Some(50),
            ..ind()
        };
        assert!(evaluate(&base, &p, 0).is_ok());
        for (i, why) in [
            (
                Indicator {
                    pattern_type: Some("yara".into()),
                    ..base.clone()
                },
                Exclusion::NotStix,
            ),
            (
                Indicator {
                    pattern_type: Some("STIX".into()),
                    ..base.clone()
                },
                Exclusion::NotStix,
            ),
            (
                Indicator {
                    revoked: true,
                    ..base.clone()
                },
                Exclusion::Revoked,
            ),
            (
                Indicator {
                    detection: Some(false),
                    ..base.clone()
                },
                Exclusion::DetectionOff,
            ),
            (
                Indicator {
                    score: Some(49),
                    ..base.clone()
                },
                Exclusion::ScoreBelowMinimum,
            ),
            (
                Indicator {
                    score: None,
                    ..base.clone()
                },
                Exclusion::ScoreBelowMinimum,
            ),
            (
                Indicator {
                    valid_until: Some(1000),
                    ..base.clone()
                },
                Exclusion::Expired,
            ),
            (
                Indicator {
                    pattern: None,
                    ..base.clone()
                },
                Exclusion::NoPattern,
            ),
            (
                Indicator {
                    pattern: Some("[email-addr:value = 'a@b']".into()),
                    ..base.clone()
                },
                Exclusion::Pattern(Skip::UnsupportedType),
            ),
        ] {
            assert_eq!(evaluate(&i, &p, 1000).map(|_| ()), Err(why));
        }
        // No minimum: a missing score passes; valid_until in the future passes.
        let v = Indicator {
            valid_until: Some(1001),
            detection: Some(true),
            ..ind()
        };
        assert_eq!(
            evaluate(&v, &Policy::default(), 1000).map(|r| r.1),
            Ok(Some(1001))
        );
    }
}
