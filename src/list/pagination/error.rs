//! Why a list request is refused; each message names the parameter, the value and the fix.

use crate::problem::Problem;

/// A list request that breaks its route's pagination policy (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaginationError {
    /// The parameter has no value.
    #[error("`{param}` is empty: send a whole number, such as {param}=100")]
    Empty {
        /// The parameter.
        param: String,
    },
    /// The value is not plain decimal digits.
    #[error(
        "`{param}` is {value:?}, which is not a whole number: send plain digits, such as {param}=100"
    )]
    NotANumber {
        /// The parameter.
        param: String,
        /// The raw value sent.
        value: String,
    },
    /// The value does not fit in 64 bits.
    #[error("`{param}` is {value}, which is far beyond any allowed value")]
    Overflow {
        /// The parameter.
        param: String,
        /// The raw value sent.
        value: String,
    },
    /// The page size is zero.
    #[error("`{param}` is 0: a page holds at least one item")]
    Zero {
        /// The parameter.
        param: String,
    },
    /// The parameter appears more than once.
    #[error("`{param}` is sent more than once: send it once")]
    Repeated {
        /// The parameter.
        param: String,
    },
    /// A parameter whose name only decodes or case-folds to a controlled name.
    #[error(
        "query parameter {sent:?} is written differently from `{param}`: write the name exactly as `{param}`"
    )]
    Disguised {
        /// The controlled name.
        param: String,
        /// The raw name sent.
        sent: String,
    },
    /// The page size is above `max_limit` and the route rejects.
    #[error(
        "`{param}` is {value}, above the maximum of {max} for this route: ask for at most {max} and follow the next-page link (cursor pagination) for more"
    )]
    LimitTooLarge {
        /// The parameter.
        param: String,
        /// The value sent.
        value: u64,
        /// `max_limit`.
        max: u64,
    },
    /// The position is deeper than `max_offset`.
    #[error(
        "`{param}={value}` starts {offset} rows deep, beyond this route's maximum offset of {max}: page with cursors instead (see `hint`)"
    )]
    OffsetTooDeep {
        /// The parameter.
        param: String,
        /// The value sent.
        value: u64,
        /// The offset it means.
        offset: u64,
        /// `max_offset`.
        max: u64,
        /// What to do instead.
        hint: String,
        /// The first keyset page, when the route has cursors.
        first_page: Option<String>,
    },
    /// A page number below the first page.
    #[error("`{param}` is {value}, but pages start at {first}")]
    PageBelowFirst {
        /// The parameter.
        param: String,
        /// The value sent.
        value: u64,
        /// The first page number.
        first: u64,
    },
    /// A parameter pagegate sets itself on a keyset route.
    #[error(
        "`{param}` is set by pagegate on this route: remove it and page with `{cursor_param}` from the next-page link instead"
    )]
    Reserved {
        /// The parameter.
        param: String,
        /// The cursor parameter.
        cursor_param: String,
    },
}

// === impl PaginationError ===

impl PaginationError {
    /// Adds the machine-readable members: parameter, value, maximum, hint, first page.
    pub(crate) fn extend(&self, problem: &mut Problem) {
        let (param, value) = match self {
            Self::Empty { param } | Self::Zero { param } | Self::Repeated { param } => {
                (param, None)
            }
            Self::NotANumber { param, value } | Self::Overflow { param, value } => {
                (param, Some(value.clone()))
            }
            Self::Disguised { param, sent } => (param, Some(sent.clone())),
            Self::LimitTooLarge { param, value, max } => {
                problem.maximum = Some(*max);
                problem.hint = Some(format!(
                    "use {param}<={max} and follow the Link rel=\"next\" header (cursor pagination) for further pages"
                ));
                (param, Some(value.to_string()))
            }
            Self::OffsetTooDeep {
                param,
                value,
                max,
                hint,
                first_page,
                ..
            } => {
                problem.maximum = Some(*max);
                problem.hint = Some(hint.clone());
                problem.first_page.clone_from(first_page);
                (param, Some(value.to_string()))
            }
            Self::PageBelowFirst { param, value, .. } => (param, Some(value.to_string())),
            Self::Reserved { param, .. } => (param, None),
        };
        problem.parameter = Some(param.clone());
        problem.value = value;
    }
}
