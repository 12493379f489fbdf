//! Collecting configuration problems with their positions, and the readers for the value
//! kinds every section uses (durations, sizes, addresses, parameter names).

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use serde_saphyr::Spanned;

use crate::config::file::Whole;
use crate::config::{ConfigProblem, Located};

/// The longest duration any key takes: a year (366 days), as rate and quota windows. Longer
/// ones limit nothing, and a clock plus a duration near `u64::MAX` seconds overflows.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// Collects problems so one run reports all of them.
#[derive(Default)]
pub(super) struct Problems(
    pub(super) Vec<Located>,
    pub(super) Vec<Located>,
    /// `Some` while checking without the environment (`check`): the secrets' variables that
    /// are unset, which `run` will need; `None` when an unset one is a problem.
    pub(super) Option<Vec<String>>,
);

impl Problems {
    pub(super) fn push<T>(&mut self, at: &Spanned<T>, problem: ConfigProblem) {
        self.0.push(Located {
            at: Some(at.referenced.into()),
            problem,
        });
    }

    /// A problem with no place in the file (a key that is missing altogether).
    pub(super) fn missing(&mut self, key: &'static str, reason: String) {
        self.0.push(Located {
            at: None,
            problem: ConfigProblem::Invalid { key, reason },
        });
    }

    /// `value` when it lies in `range`; otherwise a located problem, `is {value}: {fix}`.
    pub(super) fn whole(
        &mut self,
        value: &Spanned<Whole>,
        key: &'static str,
        range: std::ops::RangeInclusive<u64>,
        fix: &str,
    ) -> Option<u64> {
        let Whole(n) = value.value;
        if range.contains(&n) {
            return Some(n);
        }
        self.invalid(value, key, format!("is {n}: {fix}"));
        None
    }

    /// A count that may be left out: `value` when it lies in `range` (which starts at 1),
    /// else `default`, a value out of `range` located as [`Problems::whole`] locates it.
    pub(super) fn count(
        &mut self,
        value: Option<&Spanned<Whole>>,
        key: &'static str,
        range: std::ops::RangeInclusive<u64>,
        fix: &str,
        default: std::num::NonZeroUsize,
    ) -> std::num::NonZeroUsize {
        value
            .and_then(|n| self.whole(n, key, range, fix))
            .and_then(|n| usize::try_from(n).ok())
            .and_then(std::num::NonZeroUsize::new)
            .unwrap_or(default)
    }

    /// The value of a key that takes one of a few words (`choices`, the first the default,
    /// `hint` saying when to pick the second), or the default with a located problem.
    pub(super) fn choice<T: Copy>(
        &mut self,
        at: Option<&Spanned<String>>,
        key: &'static str,
        choices: [(&str, T); 2],
        hint: &str,
    ) -> T {
        let Some(at) = at else { return choices[0].1 };
        if let Some((_, value)) = choices.iter().find(|(name, _)| *name == at.value) {
            return *value;
        }
        let [(first, default), (second, _)] = choices;
        self.invalid(
            at,
            key,
            format!(
                "is {:?}: write {first} (the default) or {second}{hint}",
                at.value
            ),
        );
        default
    }

    pub(super) fn invalid<T>(&mut self, at: &Spanned<T>, key: &'static str, reason: String) {
        self.push(at, ConfigProblem::Invalid { key, reason });
    }

    /// What still works but should change: printed by `check` and logged at start.
    pub(super) fn warn<T>(&mut self, at: &Spanned<T>, key: &'static str, reason: String) {
        self.1.push(Located {
            at: Some(at.referenced.into()),
            problem: ConfigProblem::Invalid { key, reason },
        });
    }

    /// A duration that may be zero (`0s`: none), else as [`Self::duration`].
    pub(super) fn delay(
        &mut self,
        value: Option<&Spanned<String>>,
        key: &'static str,
        default: Duration,
    ) -> Duration {
        match value {
            Some(v) if humantime::parse_duration(v.value.trim()) == Ok(Duration::ZERO) => {
                Duration::ZERO
            }
            _ => self.duration(value, key, default),
        }
    }

    pub(super) fn duration(
        &mut self,
        value: Option<&Spanned<String>>,
        key: &'static str,
        default: Duration,
    ) -> Duration {
        let Some(value) = value else { return default };
        match humantime::parse_duration(value.value.trim()) {
            Ok(d) if d > MAX_DURATION => {
                let reason = format!(
                    "is {}: write a duration of at most a year (366d)",
                    value.value.trim()
                );
                self.invalid(value, key, reason);
                default
            }
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.invalid(value, key, "must be longer than zero".to_owned());
                default
            }
            Err(_) => {
                let problem = ConfigProblem::Duration {
                    key,
                    value: value.value.clone(),
                };
                self.push(value, problem);
                default
            }
        }
    }

    /// A header name the configuration reads (`example` is one to suggest when it is not one),
    /// warned about when spelled with `_` ([`Self::underscored`]).
    pub(super) fn header_name(
        &mut self,
        at: &Spanned<String>,
        key: &'static str,
        example: &str,
    ) -> Option<http::HeaderName> {
        let Ok(name) = http::HeaderName::from_bytes(at.value.trim().as_bytes()) else {
            let reason = format!("is {:?}: write a header name, such as {example}", at.value);
            self.invalid(at, key, reason);
            return None;
        };
        self.underscored(at, key, name.as_str());
        Some(name)
    }

    /// Warns about a header name spelled with `_`: nginx drops such names by default
    /// (`underscores_in_headers off`), so a client behind one never gets it through, and
    /// CGI-style servers read `-` and `_` alike. It works (pagegate drops the spellings with
    /// `-` a client sends to a backend, so they cannot stand in for it: `upstream::headers`),
    /// but is seldom what was meant.
    pub(super) fn underscored<T>(&mut self, at: &Spanned<T>, key: &'static str, name: &str) {
        if name.contains('_') {
            let dashed = name.replace('_', "-");
            let reason = format!(
                "is {name}, with `_`: nginx drops such names by default \
                 (underscores_in_headers off), so a client behind one cannot send it; write \
                 {dashed} unless the clients send {name} and nothing in front drops it"
            );
            self.warn(at, key, reason);
        }
    }

    /// A byte size such as `8MiB`, within `bounds` (inclusive); `why` explains the bounds.
    pub(super) fn size(
        &mut self,
        value: Option<&Spanned<String>>,
        key: &'static str,
        default: u64,
        bounds: (u64, u64),
        why: &str,
    ) -> u64 {
        let Some(value) = value else { return default };
        match bytesize::ByteSize::from_str(value.value.trim()) {
            Ok(size) if (bounds.0..=bounds.1).contains(&size.as_u64()) => size.as_u64(),
            Ok(_) => {
                let range = if bounds.1 == u64::MAX {
                    format!("at least {}", human(bounds.0))
                } else {
                    format!("between {} and {}", human(bounds.0), human(bounds.1))
                };
                self.invalid(
                    value,
                    key,
                    format!("is {}: {why}keep it {range}", value.value),
                );
                default
            }
            Err(_) => {
                let problem = ConfigProblem::Size {
                    key,
                    value: value.value.clone(),
                };
                self.push(value, problem);
                default
            }
        }
    }

    pub(super) fn address(
        &mut self,
        value: &Spanned<String>,
        key: &'static str,
    ) -> Option<SocketAddr> {
        let parsed = SocketAddr::from_str(value.value.trim()).ok();
        if parsed.is_none() {
            let problem = ConfigProblem::Address {
                key,
                value: value.value.clone(),
            };
            self.push(value, problem);
        }
        parsed
    }

    pub(super) fn param(
        &mut self,
        value: Option<&Spanned<String>>,
        key: &'static str,
        default: &str,
    ) -> String {
        let Some(value) = value else {
            return default.to_owned();
        };
        let ok = !value.value.is_empty()
            && value
                .value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~[]".contains(&b));
        if !ok {
            self.invalid(
                value,
                key,
                format!(
                    "is {:?}: a parameter name is letters, digits and -_.~[] exactly as the backend reads it",
                    value.value
                ),
            );
        }
        value.value.clone()
    }
}

/// A byte count as it would be written in the file.
fn human(bytes: u64) -> String {
    crate::config::yaml_bytes(bytes)
}
