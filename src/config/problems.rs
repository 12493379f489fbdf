//! Configuration errors: what is wrong, where (`FILE:LINE:COLUMN`), and how to fix it.

use std::fmt;

/// A position in the configuration file (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: u64,
    /// Column, from 1.
    pub column: u64,
}

impl From<serde_saphyr::Location> for Position {
    fn from(location: serde_saphyr::Location) -> Self {
        Self {
            line: location.line(),
            column: location.column(),
        }
    }
}

/// One problem in a configuration file. Messages say what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigProblem {
    /// The file is not valid YAML or does not have the expected shape.
    #[error("{0}")]
    Syntax(String),
    /// A duration could not be read.
    #[error(
        "`{key}` is {value:?}, which is not a duration: write a number with a unit, such as 500ms, 2s or 5m"
    )]
    Duration {
        /// The key.
        key: &'static str,
        /// What the file says.
        value: String,
    },
    /// A byte size could not be read.
    #[error(
        "`{key}` is {value:?}, which is not a byte size: write a number with a unit, such as 512KiB or 8MiB"
    )]
    Size {
        /// The key.
        key: &'static str,
        /// What the file says.
        value: String,
    },
    /// A socket address could not be read.
    #[error("`{key}` is {value:?}, which is not an address: write IP:PORT, such as 127.0.0.1:8080")]
    Address {
        /// The key.
        key: &'static str,
        /// What the file says.
        value: String,
    },
    /// Any other value that breaks a rule; the message carries the rule and the fix.
    #[error("`{key}` {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// Why, with the value and the fix.
        reason: String,
    },
    /// A route names an upstream that is not declared.
    #[error(
        "route `{route}` uses upstream `{name}`, which is not declared under `upstreams`; declared: {known}"
    )]
    UnknownUpstream {
        /// The route.
        route: String,
        /// The missing upstream.
        name: String,
        /// The declared upstreams.
        known: String,
    },
    /// `max_limit` is below `default_limit`.
    #[error(
        "`max_limit` ({max}) is below `default_limit` ({default}): raise max_limit or lower default_limit"
    )]
    MaxBelowDefault {
        /// `default_limit`.
        default: u64,
        /// `max_limit`.
        max: u64,
    },
    /// Two routes can match the same request.
    #[error(
        "route `{route}` ({path}) overlaps route `{other}`: give them different paths or disjoint `methods`"
    )]
    Overlap {
        /// The later route.
        route: String,
        /// Its path.
        path: String,
        /// The earlier route it overlaps.
        other: String,
    },
}

/// A problem with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Where, when known.
    pub at: Option<Position>,
    /// What.
    pub problem: ConfigProblem,
}

/// Every problem found in one configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file name as given on the command line.
    pub file: String,
    /// The problems, in file order.
    pub problems: Vec<Located>,
}

impl fmt::Display for ConfigError {
    /// One line per problem: `FILE:LINE:COLUMN: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, located) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match located.at {
                Some(p) => write!(
                    f,
                    "{}:{}:{}: {}",
                    self.file, p.line, p.column, located.problem
                )?,
                None => write!(f, "{}: {}", self.file, located.problem)?,
            }
        }
        Ok(())
    }
}
