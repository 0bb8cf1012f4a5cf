//! The types a connector's settings table is written in: a `Def` per setting, and a typed
//! `Key` per setting whose type parameter (one of [`kinds`]) says which reader applies.
//!
//! Each connector writes its table as constants (`const X: Key<Bool> = key(...)`) and lists
//! their definitions in one `&'static [Def]`, which drives loading, validation and the
//! generated metadata: a misspelt name or a boolean read as a number does not compile.

use std::marker::PhantomData;

use kinds::*;

/// The type of a setting's value, and what a valid value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text.
    Text,
    /// Free text that must never be shown.
    Secret,
    /// An absolute http(s) URL.
    Url,
    /// `true/false/yes/no`, any case.
    Bool,
    /// An integer within `[min, max]`.
    Int { min: i64, max: i64 },
    /// A decimal number, zero or more.
    Float,
    /// A duration as pydantic's `timedelta` reads it: ISO-8601 (`PT15M`, `P1M` = 30 days),
    /// `HH:MM:SS`, or a number of seconds; zero runs once.
    Duration,
    /// One of a fixed list of words.
    Enum(&'static [&'static str]),
    /// A filesystem path.
    Path,
    /// A list: a YAML list, or a comma-separated string.
    List,
}

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct Def {
    /// The environment variable.
    pub env: &'static str,
    /// Older or alternative environment names, read when `env` is unset.
    pub env_aliases: &'static [&'static str],
    /// `section.key` in config.yml.
    pub yml: &'static str,
    pub kind: Kind,
    /// The default, as text; `None` when the setting is optional or required.
    pub default: Option<&'static str>,
    pub required: bool,
    pub description: &'static str,
}

/// Types that stand for a `Kind` in `Key`'s parameter; they have no values.
pub mod kinds {
    macro_rules! kinds {
        ($($name:ident),*) => {$(
            #[doc = concat!("[`Kind::", stringify!($name), "`](super::Kind::", stringify!($name), ").")]
            #[derive(Debug)]
            pub enum $name {}
        )*};
    }
    kinds!(
        Text, Secret, Url, Bool, Int, Float, Duration, Enum, Path, List
    );
}

/// A setting, typed by the kind of its value (one of [`kinds`]).
#[derive(Debug)]
pub struct Key<K> {
    def: Def,
    kind: PhantomData<K>,
}

impl<K> Key<K> {
    /// Its definition.
    pub const fn def(&self) -> &Def {
        &self.def
    }

    /// Older or alternative environment names, read when the main one is unset.
    pub const fn aliases(mut self, env_aliases: &'static [&'static str]) -> Self {
        self.def.env_aliases = env_aliases;
        self
    }

    /// The same setting described otherwise: a shared row ([`common`](super::common)) whose
    /// text, in this connector, must say more (what its own settings change about it).
    pub const fn described(mut self, description: &'static str) -> Self {
        self.def.description = description;
        self
    }

    /// The same setting, optional with this default: a shared row whose default is each
    /// connector's (its name in the platform).
    pub const fn with_default(mut self, default: &'static str) -> Self {
        self.def.default = Some(default);
        self.def.required = false;
        self
    }
}

impl Key<Int> {
    /// The smallest and largest valid values.
    pub const fn range(&self) -> (i64, i64) {
        match self.def.kind {
            Kind::Int { min, max } => (min, max),
            // Only `int()` makes a `Key<Int>`, and it sets `Kind::Int`.
            _ => unreachable!(),
        }
    }
}

impl Key<Enum> {
    /// The valid values, in lower case.
    pub const fn values(&self) -> &'static [&'static str] {
        match self.def.kind {
            Kind::Enum(values) => values,
            // Only `choice()` makes a `Key<Enum>`, and it sets `Kind::Enum`.
            _ => unreachable!(),
        }
    }
}

/// The kinds whose definition needs nothing more than the kind itself.
pub trait Simple {
    const KIND: Kind;
}

macro_rules! simple {
    ($($name:ident),*) => {$(
        impl Simple for $name {
            const KIND: Kind = Kind::$name;
        }
    )*};
}
simple!(Text, Secret, Url, Bool, Float, Duration, Path, List);

const fn def(
    env: &'static str,
    yml: &'static str,
    kind: Kind,
    default: Option<&'static str>,
    required: bool,
    description: &'static str,
) -> Def {
    Def {
        env,
        env_aliases: &[],
        yml,
        kind,
        default,
        required,
        description,
    }
}

/// A setting of a kind that needs nothing more ([`Simple`]: all but `Int` and `Enum`).
pub const fn key<K: Simple>(
    env: &'static str,
    yml: &'static str,
    default: Option<&'static str>,
    required: bool,
    description: &'static str,
) -> Key<K> {
    Key {
        def: def(env, yml, K::KIND, default, required, description),
        kind: PhantomData,
    }
}

/// An integer setting within `(min, max)`.
pub const fn int(
    env: &'static str,
    yml: &'static str,
    (min, max): (i64, i64),
    default: Option<&'static str>,
    required: bool,
    description: &'static str,
) -> Key<Int> {
    Key {
        def: def(
            env,
            yml,
            Kind::Int { min, max },
            default,
            required,
            description,
        ),
        kind: PhantomData,
    }
}

/// A setting that is one of `values` (lower case; read in any case).
pub const fn choice(
    env: &'static str,
    yml: &'static str,
    values: &'static [&'static str],
    default: Option<&'static str>,
    required: bool,
    description: &'static str,
) -> Key<Enum> {
    Key {
        def: def(env, yml, Kind::Enum(values), default, required, description),
        kind: PhantomData,
    }
}
