//! What a `TAKE` answer means for one request: the rates' verdict and `RateLimit` fields,
//! and the lease taken or the limit that is full.

use std::fmt::Write as _;
use std::time::Duration;

use http::HeaderValue;

use super::leases::Pending;
use super::{Call, RedisError, Refused, Shared, Taken};

impl Shared {
    /// Reads the script's answer to `call`: a lease taken starts being renewed.
    pub(super) fn read(
        &self,
        answer: &[i64],
        call: &Call,
        pending: Option<Pending>,
    ) -> Result<Taken, RedisError> {
        let unexpected =
            |what| RedisError::Redis(redis::RedisError::from((redis::ErrorKind::Client, what)));
        let micros = |n: i64| Duration::from_micros(u64::try_from(n).unwrap_or(0));
        let secs = |n: i64| crate::limit::rate::ceil_secs(micros(n));
        let policy = self.policies.get(call.class).or(self.policies.first());
        let fields = |state: &str| {
            let policy = policy.cloned().flatten();
            let policy = policy.unwrap_or(HeaderValue::from_static(""));
            crate::limit::rate::state_fields(policy, state)
        };
        let spent = |pairs: &[i64]| {
            let mut state = String::with_capacity(40 * call.limits.len());
            for ((_, _, name), pair) in call.limits.iter().zip(pairs.chunks(2)) {
                let remaining = pair.first().copied().unwrap_or(0).max(0);
                let reset = secs(pair.get(1).copied().unwrap_or(0));
                let comma = if state.is_empty() { "" } else { ", " };
                let _ = write!(state, "{comma}\"{name}\";r={remaining};t={reset}");
            }
            (Ok(()), fields(&state))
        };
        let rate = |verdict| (!call.limits.is_empty()).then_some(verdict);
        match answer {
            [0, pairs @ ..] => {
                // The lease asked for is held now (none when no slot was asked for).
                let slot = pending
                    .filter(|_| !call.fulls.is_empty())
                    .map(|mut pending| {
                        Ok(self
                            .keeper
                            .hold(pending.id, std::mem::take(&mut pending.sets)))
                    });
                Ok(Taken {
                    rate: rate(spent(pairs)),
                    slot,
                })
            }
            [2, full, pairs @ ..] => {
                let index = usize::try_from(*full - 1).unwrap_or(0);
                let full = call
                    .fulls
                    .get(index)
                    .copied()
                    .ok_or_else(|| unexpected("an unexpected slot answer"))?;
                Ok(Taken {
                    rate: rate(spent(pairs)),
                    slot: Some(Err(full)),
                })
            }
            [1, i, wait] => {
                let index = usize::try_from(*i - 1).unwrap_or(0);
                let (rate, which, name) = call
                    .limits
                    .get(index)
                    .copied()
                    .ok_or_else(|| unexpected("an unexpected rate answer"))?;
                let retry_after = secs(*wait).max(1);
                let state = format!("\"{name}\";r=0;t={retry_after}");
                let refused = Refused {
                    which,
                    rate,
                    retry_after,
                };
                Ok(Taken {
                    rate: Some((Err(refused), fields(&state))),
                    slot: None,
                })
            }
            [3] => Err(unexpected(
                "the limits script failed on this request's keys (Redis's log says why)",
            )),
            _ => Err(unexpected("an empty limits answer")),
        }
    }
}
