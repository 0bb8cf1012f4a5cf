//! STIX 2.1 pattern parser (recursive descent over the grammar of the STIX 2.1 spec,
//! section 9) and the extraction of Active List values from a parsed pattern.
//!
//! No crate was taken: on crates.io `stix2` 0.1.1 and `stix-rust` 0.2.0 are single young
//! releases of whole STIX toolkits, not maintained pattern parsers.

use thiserror::Error;

/// Patterns longer than this are refused (an indicator pattern is a few hundred bytes).
pub const MAX_PATTERN_LEN: usize = 64 * 1024;
/// Nesting bound: a hostile pattern cannot overflow the stack.
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum PatternError {
    #[error("pattern longer than {MAX_PATTERN_LEN} bytes")]
    TooLong,
    #[error("pattern nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("unexpected {found} at byte {at}, expected {expected}")]
    Unexpected {
        at: usize,
        found: String,
        expected: &'static str,
    },
    #[error("unterminated string literal starting at byte {0}")]
    Unterminated(usize),
    #[error("invalid escape in string literal at byte {0} (only \\' and \\\\ are allowed)")]
    BadEscape(usize),
    #[error("invalid number at byte {0}")]
    BadNumber(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// `[ ... ]`
    Comparison(Comparison),
    And(Vec<Observation>),
    Or(Vec<Observation>),
    FollowedBy(Vec<Observation>),
    Qualified(Box<Observation>, Qualifier),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Comparison {
    Test(Test),
    And(Vec<Comparison>),
    Or(Vec<Comparison>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Test {
    pub path: ObjectPath,
    pub negated: bool,
    pub op: Op,
    /// `None` for `EXISTS`.
    pub value: Option<Literal>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    In,
    Like,
    Matches,
    IsSubset,
    IsSuperset,
    Exists,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Qualifier {
    Within(f64),
    Repeats(i64),
    StartStop(String, String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObjectPath {
    pub object_type: String,
    pub steps: Vec<PathStep>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PathStep {
    Key(String),
    Index(i64),
    AnyIndex,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Timestamp(String),
    Hex(String),
    Binary(String),
    Set(Vec<Literal>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LBracket,
    RBracket,
    LParen,
    RParen,
    Colon,
    Dot,
    Comma,
    Star,
    Cmp(Op),
    Word(String),
    Str(String),
    Int(i64),
    Float(f64),
    Ts(String),
    Hex(String),
    Bin(String),
}

fn lex(src: &str) -> Result<Vec<(usize, Tok)>, PatternError> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        let start = i;
        let single = match c {
            b'[' => Some(Tok::LBracket),
            b']' => Some(Tok::RBracket),
            b'(' => Some(Tok::LParen),
            b')' => Some(Tok::RParen),
            b':' => Some(Tok::Colon),
            b'.' => Some(Tok::Dot),
            b',' => Some(Tok::Comma),
            b'*' => Some(Tok::Star),
            _ => None,
        };
        if let Some(t) = single {
            out.push((start, t));
            i += 1;
            continue;
        }
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let two = b.get(i + 1).copied();
        let cmp = match (c, two) {
            (b'!', Some(b'=')) => Some((Op::Ne, 2)),
            (b'>', Some(b'=')) => Some((Op::Ge, 2)),
            (b'<', Some(b'=')) => Some((Op::Le, 2)),
            (b'<', Some(b'>')) => Some((Op::Ne, 2)),
            (b'=', Some(b'=')) => Some((Op::Eq, 2)),
            (b'=', _) => Some((Op::Eq, 1)),
            (b'>', _) => Some((Op::Gt, 1)),
            (b'<', _) => Some((Op::Lt, 1)),
            _ => None,
        };
        if let Some((op, n)) = cmp {
            out.push((start, Tok::Cmp(op)));
            i += n;
            continue;
        }
        if c == b'\'' {
            let (s, next) = string(src, i)?;
            out.push((start, Tok::Str(s)));
            i = next;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'-') {
                j += 1;
            }
            let word = &src[i..j];
            if b.get(j) == Some(&b'\'') && matches!(word, "t" | "h" | "b64" | "b") {
                let (s, next) = string(src, j)?;
                out.push((
                    start,
                    match word {
                        "t" => Tok::Ts(s),
                        "h" => Tok::Hex(s),
                        _ => Tok::Bin(s),
                    },
                ));
                i = next;
            } else {
                out.push((start, Tok::Word(word.to_owned())));
                i = j;
            }
            continue;
        }
        if c.is_ascii_digit() || c == b'-' || c == b'+' {
            let mut j = i + 1;
            while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.') {
                j += 1;
            }
            let text = &src[i..j];
            let tok = if text.contains('.') {
                text.parse()
                    .map(Tok::Float)
                    .map_err(|_| PatternError::BadNumber(i))?
            } else {
                text.parse()
                    .map(Tok::Int)
                    .map_err(|_| PatternError::BadNumber(i))?
            };
            out.push((start, tok));
            i = j;
            continue;
        }
        let ch = src[i..].chars().next().unwrap_or('?');
        return Err(PatternError::Unexpected {
            at: i,
            found: format!("{ch:?}"),
            expected: "a token",
        });
    }
    Ok(out)
}

/// A STIX string literal at `src[at] == '\''`: `\'` and `\\` are the only escapes.
fn string(src: &str, at: usize) -> Result<(String, usize), PatternError> {
    let mut s = String::new();
    let mut chars = src[at + 1..].char_indices();
    while let Some((k, ch)) = chars.next() {
        match ch {
            '\'' => return Ok((s, at + 1 + k + 1)),
            '\\' => match chars.next() {
                Some((_, c @ ('\'' | '\\'))) => s.push(c),
                _ => return Err(PatternError::BadEscape(at + 1 + k)),
            },
            c => s.push(c),
        }
    }
    Err(PatternError::Unterminated(at))
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.1)
    }
    fn kw(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k))
    }
    fn err(&self, expected: &'static str) -> PatternError {
        match self.toks.get(self.pos) {
            Some((at, t)) => PatternError::Unexpected {
                at: *at,
                found: format!("{t:?}"),
                expected,
            },
            None => PatternError::Unexpected {
                at: self.end,
                found: "end of pattern".into(),
                expected,
            },
        }
    }
    fn eat(&mut self, t: &Tok, expected: &'static str) -> Result<(), PatternError> {
        if self.peek() == Some(t) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(expected))
        }
    }
    fn eat_kw(&mut self, k: &str, expected: &'static str) -> Result<(), PatternError> {
        if self.kw(k) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(expected))
        }
    }
    fn enter(&mut self) -> Result<(), PatternError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            Err(PatternError::TooDeep)
        } else {
            Ok(())
        }
    }

    /// A binary level: `sub (KW sub)*`, flattened.
    fn level<T>(
        &mut self,
        kw: &str,
        sub: fn(&mut Self) -> Result<T, PatternError>,
        wrap: fn(Vec<T>) -> T,
    ) -> Result<T, PatternError> {
        let mut items = vec![sub(self)?];
        while self.kw(kw) {
            self.pos += 1;
            items.push(sub(self)?);
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one item")
        } else {
            wrap(items)
        })
    }

    fn obs_followed(&mut self) -> Result<Observation, PatternError> {
        self.level("FOLLOWEDBY", Self::obs_or, Observation::FollowedBy)
    }
    fn obs_or(&mut self) -> Result<Observation, PatternError> {
        self.level("OR", Self::obs_and, Observation::Or)
    }
    fn obs_and(&mut self) -> Result<Observation, PatternError> {
        self.level("AND", Self::obs_qualified, Observation::And)
    }
    fn obs_qualified(&mut self) -> Result<Observation, PatternError> {
        self.enter()?;
        let mut obs = match self.peek() {
            Some(Tok::LBracket) => {
                self.pos += 1;
                let c = self.cmp_or()?;
                self.eat(&Tok::RBracket, "']'")?;
                Observation::Comparison(c)
            }
            Some(Tok::LParen) => {
                self.pos += 1;
                let o = self.obs_followed()?;
                self.eat(&Tok::RParen, "')'")?;
                o
            }
            _ => return Err(self.err("'[' or '('")),
        };
        loop {
            let q = if self.kw("WITHIN") {
                self.pos += 1;
                let n = match self.peek() {
                    Some(Tok::Int(n)) if *n > 0 => *n as f64,
                    Some(Tok::Float(f)) if *f > 0.0 => *f,
                    _ => return Err(self.err("a positive number of seconds")),
                };
                self.pos += 1;
                self.eat_kw("SECONDS", "SECONDS")?;
                Qualifier::Within(n)
            } else if self.kw("REPEATS") {
                self.pos += 1;
                let Some(Tok::Int(n)) = self.peek().cloned() else {
                    return Err(self.err("a number of times"));
                };
                if n <= 0 {
                    return Err(self.err("a positive number of times"));
                }
                self.pos += 1;
                self.eat_kw("TIMES", "TIMES")?;
                Qualifier::Repeats(n)
            } else if self.kw("START") {
                self.pos += 1;
                let Some(Tok::Ts(a)) = self.peek().cloned() else {
                    return Err(self.err("a t'...' timestamp"));
                };
                self.pos += 1;
                self.eat_kw("STOP", "STOP")?;
                let Some(Tok::Ts(b)) = self.peek().cloned() else {
                    return Err(self.err("a t'...' timestamp"));
                };
                self.pos += 1;
                Qualifier::StartStop(a, b)
            } else {
                break;
            };
            obs = Observation::Qualified(Box::new(obs), q);
        }
        self.depth -= 1;
        Ok(obs)
    }

    fn cmp_or(&mut self) -> Result<Comparison, PatternError> {
        self.level("OR", Self::cmp_and, Comparison::Or)
    }
    fn cmp_and(&mut self) -> Result<Comparison, PatternError> {
        self.level("AND", Self::cmp_test, Comparison::And)
    }
    fn cmp_test(&mut self) -> Result<Comparison, PatternError> {
        self.enter()?;
        let c = if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let c = self.cmp_or()?;
            self.eat(&Tok::RParen, "')'")?;
            c
        } else if self.kw("EXISTS") {
            self.pos += 1;
            let path = self.path()?;
            Comparison::Test(Test {
                path,
                negated: false,
                op: Op::Exists,
                value: None,
            })
        } else {
            let path = self.path()?;
            let negated = self.kw("NOT");
            if negated {
                self.pos += 1;
            }
            let op = match self.peek() {
                Some(Tok::Cmp(op)) => *op,
                Some(Tok::Word(w)) => match w.to_ascii_uppercase().as_str() {
                    "IN" => Op::In,
                    "LIKE" => Op::Like,
                    "MATCHES" => Op::Matches,
                    "ISSUBSET" => Op::IsSubset,
                    "ISSUPERSET" => Op::IsSuperset,
                    _ => return Err(self.err("a comparison operator")),
                },
                _ => return Err(self.err("a comparison operator")),
            };
            self.pos += 1;
            let value = if op == Op::In {
                self.set()?
            } else {
                self.literal()?
            };
            Comparison::Test(Test {
                path,
                negated,
                op,
                value: Some(value),
            })
        };
        self.depth -= 1;
        Ok(c)
    }

    fn set(&mut self) -> Result<Literal, PatternError> {
        self.eat(&Tok::LParen, "'(' starting a set")?;
        let mut items = vec![self.literal()?];
        while self.peek() == Some(&Tok::Comma) {
            self.pos += 1;
            items.push(self.literal()?);
        }
        self.eat(&Tok::RParen, "')' ending a set")?;
        Ok(Literal::Set(items))
    }

    fn literal(&mut self) -> Result<Literal, PatternError> {
        let l = match self.peek().cloned() {
            Some(Tok::Str(s)) => Literal::Str(s),
            Some(Tok::Int(n)) => Literal::Int(n),
            Some(Tok::Float(f)) => Literal::Float(f),
            Some(Tok::Ts(s)) => Literal::Timestamp(s),
            Some(Tok::Hex(s)) => Literal::Hex(s),
            Some(Tok::Bin(s)) => Literal::Binary(s),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
            _ => return Err(self.err("a literal")),
        };
        self.pos += 1;
        Ok(l)
    }

    fn path(&mut self) -> Result<ObjectPath, PatternError> {
        let Some(Tok::Word(object_type)) = self.peek().cloned() else {
            return Err(self.err("an object type"));
        };
        self.pos += 1;
        self.eat(&Tok::Colon, "':'")?;
        let mut steps = vec![self.key()?];
        loop {
            match self.peek() {
                Some(Tok::Dot) => {
                    self.pos += 1;
                    steps.push(self.key()?);
                }
                Some(Tok::LBracket) => {
                    self.pos += 1;
                    let step = match self.peek() {
                        Some(Tok::Int(n)) => PathStep::Index(*n),
                        Some(Tok::Star) => PathStep::AnyIndex,
                        _ => return Err(self.err("a list index or '*'")),
                    };
                    self.pos += 1;
                    self.eat(&Tok::RBracket, "']'")?;
                    steps.push(step);
                }
                _ => break,
            }
        }
        Ok(ObjectPath { object_type, steps })
    }

    fn key(&mut self) -> Result<PathStep, PatternError> {
        let k = match self.peek().cloned() {
            // Unquoted keys with a hyphen (`hashes.SHA-256`) are not STIX but the Python
            // connector accepts them, so we do too.
            Some(Tok::Word(w)) | Some(Tok::Str(w)) => PathStep::Key(w),
            _ => return Err(self.err("a property name")),
        };
        self.pos += 1;
        Ok(k)
    }
}

pub fn parse(src: &str) -> Result<Observation, PatternError> {
    if src.len() > MAX_PATTERN_LEN {
        return Err(PatternError::TooLong);
    }
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        end: src.len(),
        depth: 0,
    };
    let obs = p.obs_followed()?;
    if p.pos != p.toks.len() {
        return Err(p.err("end of pattern"));
    }
    Ok(obs)
}

// ---------------------------------------------------------------- extraction

/// The observable kinds the connector can put in the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueKind {
    Ipv4,
    Ipv6,
    Domain,
    Url,
    Md5,
    Sha1,
    Sha256,
    // Behind `ExtractPolicy::extra_types`:
    Hostname,
    Email,
    Sha512,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtractPolicy {
    /// Also take every value of an OR of equality comparisons.
    pub or_values: bool,
    /// Also hostname:value, email-addr:value, file:hashes.SHA-512.
    pub extra_types: bool,
}

/// Why a pattern gives no value (counted by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Skip {
    Unparsable,
    Or,
    And,
    FollowedBy,
    Qualifier,
    Operator,
    UnsupportedType,
    NotAString,
    EmptyValue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    pub kind: ValueKind,
    pub value: String,
}

/// The hash key as the Python connector matches it: `'?(MD5|SHA-?1|SHA-?256)'?`,
/// case-insensitive.
fn hash_kind(key: &str, extra: bool) -> Option<ValueKind> {
    match key.to_ascii_uppercase().as_str() {
        "MD5" => Some(ValueKind::Md5),
        "SHA-1" | "SHA1" => Some(ValueKind::Sha1),
        "SHA-256" | "SHA256" => Some(ValueKind::Sha256),
        "SHA-512" | "SHA512" if extra => Some(ValueKind::Sha512),
        _ => None,
    }
}

fn kind_of(path: &ObjectPath, extra: bool) -> Option<ValueKind> {
    // Object types are case-sensitive, as in the Python connector.
    match (path.object_type.as_str(), path.steps.as_slice()) {
        ("ipv4-addr", [PathStep::Key(k)]) if k == "value" => Some(ValueKind::Ipv4),
        ("ipv6-addr", [PathStep::Key(k)]) if k == "value" => Some(ValueKind::Ipv6),
        ("domain-name", [PathStep::Key(k)]) if k == "value" => Some(ValueKind::Domain),
        ("url", [PathStep::Key(k)]) if k == "value" => Some(ValueKind::Url),
        ("hostname", [PathStep::Key(k)]) if extra && k == "value" => Some(ValueKind::Hostname),
        ("email-addr", [PathStep::Key(k)]) if extra && k == "value" => Some(ValueKind::Email),
        ("file", [PathStep::Key(h), PathStep::Key(alg)]) if h == "hashes" => hash_kind(alg, extra),
        _ => None,
    }
}

fn equality(t: &Test, policy: ExtractPolicy) -> Result<Extracted, Skip> {
    if t.negated || t.op != Op::Eq {
        return Err(Skip::Operator);
    }
    let kind = kind_of(&t.path, policy.extra_types).ok_or(Skip::UnsupportedType)?;
    match &t.value {
        // Verbatim once STIX escapes are decoded: the Python connector pushes the quoted text
        // as is (no case folding, no trimming), and a list entry is matched as written.
        Some(Literal::Str(s)) if s.is_empty() => Err(Skip::EmptyValue),
        Some(Literal::Str(s)) => Ok(Extracted {
            kind,
            value: s.clone(),
        }),
        _ => Err(Skip::NotAString),
    }
}

fn or_leaves<'a>(c: &'a Comparison, out: &mut Vec<&'a Test>) -> Result<(), Skip> {
    match c {
        Comparison::Test(t) => out.push(t),
        Comparison::Or(v) => v.iter().try_for_each(|c| or_leaves(c, out))?,
        Comparison::And(_) => return Err(Skip::And),
    }
    Ok(())
}

fn obs_leaves<'a>(o: &'a Observation, out: &mut Vec<&'a Test>) -> Result<(), Skip> {
    match o {
        Observation::Comparison(c) => or_leaves(c, out),
        Observation::Or(v) => v.iter().try_for_each(|o| obs_leaves(o, out)),
        Observation::And(_) => Err(Skip::And),
        Observation::FollowedBy(_) => Err(Skip::FollowedBy),
        Observation::Qualified(..) => Err(Skip::Qualifier),
    }
}

/// The values a pattern puts in the list, or why it puts none. Values are deduplicated,
/// in pattern order.
pub fn extract(obs: &Observation, policy: ExtractPolicy) -> Result<Vec<Extracted>, Skip> {
    let mut leaves = Vec::new();
    obs_leaves(obs, &mut leaves)?;
    if leaves.len() > 1 && !policy.or_values {
        return Err(Skip::Or);
    }
    let mut out: Vec<Extracted> = Vec::with_capacity(leaves.len());
    for t in leaves {
        let e = equality(t, policy)?;
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

/// Parse and extract in one step.
pub fn extract_str(pattern: &str, policy: ExtractPolicy) -> Result<Vec<Extracted>, Skip> {
    extract(&parse(pattern).map_err(|_| Skip::Unparsable)?, policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DEF: ExtractPolicy = ExtractPolicy {
        or_values: false,
        extra_types: false,
    };
    const OR: ExtractPolicy = ExtractPolicy {
        or_values: true,
        extra_types: false,
    };

    fn vals(p: &str, pol: ExtractPolicy) -> Result<Vec<String>, Skip> {
        extract_str(p, pol).map(|v| v.into_iter().map(|e| e.value).collect())
    }

    #[test]
    fn python_connector_accepted_patterns() {
        for (p, v, k) in [
            (
                "[ipv4-addr:value = '198.51.100.1']",
                "198.51.100.1",
                ValueKind::Ipv4,
            ),
            (
                " [ipv4-addr:value='10.0.0.0/8'] ",
                "10.0.0.0/8",
                ValueKind::Ipv4,
            ),
            (
                "[ipv6-addr:value = '2001:db8::1']",
                "2001:db8::1",
                ValueKind::Ipv6,
            ),
            (
                "[domain-name:value = 'evil.example.com']",
                "evil.example.com",
                ValueKind::Domain,
            ),
            (
                "[url:value = 'http://evil.example.com/x']",
                "http://evil.example.com/x",
                ValueKind::Url,
            ),
            (
                "[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']",
                "d41d8cd98f00b204e9800998ecf8427e",
                ValueKind::Md5,
            ),
            ("[file:hashes.'MD5' = 'a']", "a", ValueKind::Md5),
            ("[file:hashes.SHA1 = 'b']", "b", ValueKind::Sha1),
            ("[file:hashes.'SHA-1' = 'b']", "b", ValueKind::Sha1),
            ("[file:hashes.sha256 = 'c']", "c", ValueKind::Sha256),
            ("[file:hashes.'SHA-256' = 'c']", "c", ValueKind::Sha256),
            ("[file:hashes.'sha-256' = 'c']", "c", ValueKind::Sha256),
        ] {
            assert_eq!(
                extract_str(p, DEF),
                Ok(vec![Extracted {
                    kind: k,
                    value: v.into()
                }]),
                "{p}"
            );
        }
    }

    #[test]
    fn escaped_quote_and_backslash_are_decoded() {
        // The Python connector drops the first and doubles the backslashes of the second.
        assert_eq!(
            vals(r"[url:value = 'http://x.example/it\'s']", DEF),
            Ok(vec!["http://x.example/it's".into()])
        );
        assert_eq!(
            vals(r"[url:value = 'http://x.example/a\\b']", DEF),
            Ok(vec![r"http://x.example/a\b".into()])
        );
        assert!(matches!(
            parse(r"[url:value = 'a\nb']"),
            Err(PatternError::BadEscape(_))
        ));
    }

    #[test]
    fn unsupported_types_and_extras_behind_the_option() {
        let extra = ExtractPolicy {
            or_values: false,
            extra_types: true,
        };
        for p in [
            "[hostname:value = 'h']",
            "[email-addr:value = 'a@b.c']",
            "[file:hashes.'SHA-512' = 'x']",
        ] {
            assert_eq!(vals(p, DEF), Err(Skip::UnsupportedType), "{p}");
            assert_eq!(extract_str(p, extra).map(|v| v.len()), Ok(1), "{p}");
        }
        assert_eq!(
            vals("[IPV4-ADDR:value = '1.2.3.4']", DEF),
            Err(Skip::UnsupportedType)
        );
        assert_eq!(
            vals("[file:name = 'x.exe']", DEF),
            Err(Skip::UnsupportedType)
        );
        assert_eq!(
            vals("[file:hashes.SSDEEP = 'x']", extra),
            Err(Skip::UnsupportedType)
        );
        assert_eq!(vals("[ipv4-addr:value = 5]", DEF), Err(Skip::NotAString));
        assert_eq!(vals("[ipv4-addr:value = '']", DEF), Err(Skip::EmptyValue));
    }

    #[test]
    fn python_rejected_quote_imbalance_is_a_parse_error() {
        assert_eq!(
            vals("[file:hashes.'SHA-256 = 'x']", DEF),
            Err(Skip::Unparsable)
        );
        assert_eq!(vals("garbage", DEF), Err(Skip::Unparsable));
    }

    #[test]
    fn or_values_only_with_the_option_and_all_supported() {
        let p = "[ipv4-addr:value = '1.1.1.1' OR ipv4-addr:value = '2.2.2.2' OR domain-name:value = 'd']";
        assert_eq!(vals(p, DEF), Err(Skip::Or));
        assert_eq!(
            vals(p, OR),
            Ok(vec!["1.1.1.1".into(), "2.2.2.2".into(), "d".into()])
        );
        let q = "[ipv4-addr:value = '1.1.1.1'] OR ([url:value = 'u'])";
        assert_eq!(vals(q, OR), Ok(vec!["1.1.1.1".into(), "u".into()]));
        let bad = "[ipv4-addr:value = '1.1.1.1' OR email-addr:value = 'e@x']";
        assert_eq!(vals(bad, OR), Err(Skip::UnsupportedType));
        let dup = "[ipv4-addr:value = '1.1.1.1' OR ipv4-addr:value = '1.1.1.1']";
        assert_eq!(vals(dup, OR), Ok(vec!["1.1.1.1".into()]));
    }

    #[test]
    fn and_followedby_qualifiers_and_operators_are_skipped_with_reason() {
        for (p, why) in [
            (
                "[ipv4-addr:value = '1.1.1.1' AND ipv4-addr:value = '2.2.2.2']",
                Skip::And,
            ),
            (
                "[ipv4-addr:value = '1.1.1.1'] AND [url:value = 'u']",
                Skip::And,
            ),
            (
                "[ipv4-addr:value = '1.1.1.1'] FOLLOWEDBY [url:value = 'u']",
                Skip::FollowedBy,
            ),
            (
                "[ipv4-addr:value = '1.1.1.1'] WITHIN 300 SECONDS",
                Skip::Qualifier,
            ),
            (
                "[ipv4-addr:value = '1.1.1.1'] REPEATS 5 TIMES",
                Skip::Qualifier,
            ),
            (
                "[ipv4-addr:value = '1.1.1.1'] START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'",
                Skip::Qualifier,
            ),
            ("[ipv4-addr:value != '1.1.1.1']", Skip::Operator),
            ("[ipv4-addr:value NOT = '1.1.1.1']", Skip::Operator),
            (
                "[ipv4-addr:value IN ('1.1.1.1', '2.2.2.2')]",
                Skip::Operator,
            ),
            ("[url:value LIKE 'http://%']", Skip::Operator),
            ("[url:value MATCHES '^http']", Skip::Operator),
            ("[ipv4-addr:value ISSUBSET '10.0.0.0/8']", Skip::Operator),
            ("[EXISTS url:value]", Skip::Operator),
        ] {
            assert_eq!(vals(p, OR), Err(why), "{p}");
        }
    }

    #[test]
    fn full_grammar_parses() {
        let p = "([file:hashes.'SHA-256' = 'x' AND file:size >= 10] OR [network-traffic:extensions.'http-request-ext'.request_header.'Accept-Encoding' = 'gzip' AND x:list[0] = h'ff' AND x:list[*] = b64'AAA=' AND x:b = true AND x:f < -1.5]) FOLLOWEDBY [ipv4-addr:value ISSUPERSET '1.0.0.0/8'] WITHIN 5 SECONDS REPEATS 2 TIMES";
        let obs = parse(p).expect("parses");
        let Observation::FollowedBy(parts) = obs else {
            panic!("not FOLLOWEDBY: {obs:?}")
        };
        assert_eq!(parts.len(), 2);
        assert!(
            matches!(&parts[1], Observation::Qualified(inner, Qualifier::Repeats(2)) if matches!(**inner, Observation::Qualified(_, Qualifier::Within(w)) if w == 5.0))
        );
        let Observation::Or(ors) = &parts[0] else {
            panic!()
        };
        let Observation::Comparison(Comparison::And(tests)) = &ors[1] else {
            panic!()
        };
        let Comparison::Test(t) = &tests[0] else {
            panic!()
        };
        assert_eq!(
            t.path.steps,
            vec![
                PathStep::Key("extensions".into()),
                PathStep::Key("http-request-ext".into()),
                PathStep::Key("request_header".into()),
                PathStep::Key("Accept-Encoding".into())
            ]
        );
        let Comparison::Test(t) = &tests[2] else {
            panic!()
        };
        assert_eq!(t.path.steps[1], PathStep::AnyIndex);
        assert_eq!(t.value, Some(Literal::Binary("AAA=".into())));
    }

    #[test]
    fn malformed_patterns_are_errors() {
        for p in [
            "",
            "[",
            "[ipv4-addr:value = '1'",
            "[ipv4-addr:value '1']",
            "[a:b = 'x'] AND",
            "[a:b = 'x'] WITHIN SECONDS",
            "[a:b = 'x']]",
            "[a:b IN ()]",
        ] {
            assert!(parse(p).is_err(), "{p:?} parsed");
        }
        let deep = format!("{}[a:b = 'x']{}", "(".repeat(10_000), ")".repeat(10_000));
        assert_eq!(parse(&deep), Err(PatternError::TooDeep));
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC{0,200}") {
            let _ = extract_str(&s, OR);
        }

        #[test]
        fn parser_never_panics_on_pattern_like_input(s in "[\\[\\]()':=.a-z0-9 \\\\-]{0,120}|(\\[|\\(|\\)|\\]| AND | OR |ipv4-addr:value|'x'|=| WITHIN 1 SECONDS|'\\\\'| FOLLOWEDBY )*") {
            let _ = extract_str(&s, OR);
        }

        #[test]
        fn any_string_value_round_trips_through_escaping(v in "\\PC{1,40}") {
            let esc = v.replace('\\', "\\\\").replace('\'', "\\'");
            let p = format!("[url:value = '{esc}']");
            prop_assert_eq!(vals(&p, DEF), Ok(vec![v]));
        }
    }
}
