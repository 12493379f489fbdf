//! When the database refuses a statement's value: which client value it was ([`Offered`]),
//! found by casting the values on their own ([`Resource::blame`]), and what the client is told.

use super::Resource;
use crate::table::running::{Ctx, refuses_value, sqlstate_error};
use crate::table::{Catalog, PgError, sql};

/// How many values one probe of [`Resource::blame`] casts: well under the 1,664 entries a
/// PostgreSQL select list holds (past them, the probe itself is refused, class 54, and that
/// refusal would be read as the value's).
const PROBE_RUN: usize = 1_000;

/// A client's value as it met a column: to blame it by name when the database refuses it.
#[derive(Debug, Clone)]
pub(in crate::table) struct Offered {
    /// Where the client wrote it.
    pub(in crate::table) source: Source,
    /// The column it is compared with.
    pub(in crate::table) column: String,
    /// The value.
    pub(in crate::table) value: String,
}

/// Where a client wrote a value; named only when the database refuses it, so an answered
/// request formats no label.
#[derive(Debug, Clone)]
pub(in crate::table) enum Source {
    /// A filter with this operator.
    Filter(crate::table::config::FilterOp),
    /// `after`.
    After,
    /// The scope header.
    Header(http::HeaderName),
    /// The scope claim.
    Claim(String),
}

impl Offered {
    /// The parameter as the client wrote it (`the filter amount=gte.…`, `after`, a header).
    pub(in crate::table) fn parameter(&self) -> String {
        match &self.source {
            Source::Filter(op) => format!("the filter `{}={}.…`", self.column, op.name()),
            Source::After => format!("`after` (its {} value)", self.column),
            Source::Header(name) => format!("the {name} header"),
            Source::Claim(name) => format!("the token's {name} claim"),
        }
    }
}

impl Resource {
    /// What a failed statement's error says to the client. [`PgError::Rejected`] and
    /// [`PgError::Changed`] may be a client's value (some types' input functions raise class 42
    /// for bad text): the value at fault is named ([`Resource::blame`]); otherwise a refused
    /// value is stored data the statement cannot read (500), and a changed table is read
    /// again.
    pub(in crate::table) async fn answer(
        &self,
        error: PgError,
        catalog: &Catalog,
        values: &[Offered],
        ctx: &Ctx,
    ) -> PgError {
        if !matches!(error, PgError::Rejected | PgError::Changed) {
            return error;
        }
        match (self.blame(catalog, values, ctx).await, error) {
            (Some(blamed @ PgError::BadValue { .. }), _) => blamed,
            (Some(PgError::Changed) | None, PgError::Changed) => {
                self.forget();
                PgError::Changed
            }
            (None, _) => {
                tracing::error!(
                    route = &*ctx.route,
                    request_id = ctx.request.as_deref().unwrap_or("-"),
                    "the database refused a statement's value, but no client value on its own: stored data the statement cannot read (text UTF-8 cannot carry?)"
                );
                PgError::Database
            }
            (Some(other), _) => other,
        }
    }

    /// The client value the database refuses, cast as the statement casts it (PostgreSQL does
    /// not say which parameter it refused), as a 400 naming it; `None` when every value reads.
    /// Values are cast in runs of [`PROBE_RUN`], one statement each, then halves of the first
    /// refused run until one value is left: at most ⌈n / 1,000⌉ + 10 round trips, so 3,200 `in`
    /// items cost 14 at most, not 3,200. A value whose cast raises class 42 or 0A000 is at
    /// fault only when the same cast of NULL is not (else the column's type itself changed). A statement that succeeds costs none of this.
    async fn blame(&self, catalog: &Catalog, values: &[Offered], ctx: &Ctx) -> Option<PgError> {
        if values.is_empty() {
            return None;
        }
        let mut running = match self.connection(false, ctx).await {
            Ok(running) => running,
            Err(error) => return Some(error),
        };
        let cast = |run: &[Offered]| {
            sql::cast_values(
                catalog,
                run.iter()
                    .map(|o| (o.column.as_str(), Some(o.value.as_str()))),
            )
        };
        let mut refused = None;
        for run in values.chunks(PROBE_RUN) {
            match running.probe(&cast(run)).await {
                Ok(()) => {}
                Err(None) => return Some(PgError::Unavailable),
                Err(Some(first)) => {
                    refused = Some((run, first));
                    break;
                }
            }
        }
        let (mut run, (mut code, mut message)) = refused?;
        // PostgreSQL casts a select list left to right and reports the first cast that fails,
        // so the refusal held, of a run that `run` ends or starts, is its first bad value's.
        while run.len() > 1 {
            let (first, second) = run.split_at(run.len() / 2);
            match running.probe(&cast(first)).await {
                Ok(()) => run = second,
                Err(None) => return Some(PgError::Unavailable),
                Err(Some(refused)) => (run, (code, message)) = (first, refused),
            }
        }
        let offered = &run[0];
        let at_fault = refuses_value(&code)
            || ((code == "0A000" || code.starts_with("42"))
                && running
                    .probe(&sql::cast_values(
                        catalog,
                        [(offered.column.as_str(), None)],
                    ))
                    .await
                    .is_ok());
        Some(if at_fault {
            // A constraint's message (class 23) names the domain and its constraint: the
            // client learns only what was broken.
            if code.starts_with("23") {
                tracing::debug!(%code, %message, "a client value breaks a constraint");
                message = "it violates a check constraint of the column's type".to_owned();
            }
            PgError::BadValue {
                parameter: offered.parameter(),
                message,
            }
        } else {
            sqlstate_error(&code, &message, ctx)
        })
    }
}
